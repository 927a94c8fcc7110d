// Usage: what provider calls cost.
//
// Stream TC_USAGE, subjects tc.usage.<day>, kept 400 days: one message per
// provider call (chat.UsageRecord), its message id the call's key, so a
// retried publish of a record is one record.
//
// KV bucket TC_USAGE_ROLLUPS, kept forever: one key per day, principal and
// model (<day>.<principal>.<model>, the last two base64url), the sums of
// that day's records. A query reads rollups, never the records.
//
// KV bucket TC_OPEN_CALLS, kept a week: one key per provider call under
// way (<session>.<request>.<attempt>.<call>, the record's key), written
// as the call is made, updated now and then as it streams, deleted once
// the call is recorded, all without waiting. A note still there when a
// newer attempt claims the request is a call whose worker died mid-call:
// that attempt records it from the note (OpenCalls), once, since a record
// keeps its key as message id.
//
// The durable consumer "rollup" on TC_USAGE folds each record into its
// rollup exactly once. It lets one message be in flight at a time across
// the cluster, so records are folded in stream order; a rollup keeps the
// stream position of the newest record in it, so a record delivered again
// after it was folded (its folder died before the ack) is skipped.

package bus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	usageStream   = "TC_USAGE"
	usageSubj     = "tc.usage."
	usageBucket   = "TC_USAGE_ROLLUPS"
	usageConsumer = "rollup"
	openBucket    = "TC_OPEN_CALLS"
	// openKeep is how long a call's note outlives a worker that died
	// mid-call and a request nobody took over: longer than any outage
	// after which the server is started again.
	openKeep = 7 * 24 * time.Hour
	// usageRetention keeps a year's records and a month to spare, to
	// audit a bill or rebuild rollups from.
	usageRetention = 400 * 24 * time.Hour
	// usageDedup is how long a record's key is remembered: a retried
	// publish comes within seconds.
	usageDedup = 10 * time.Minute
	// foldWait is how long a folder may hold a record: one whose node died
	// holds up every record after it (one is folded at a time) that long.
	foldWait = 5 * time.Second
)

// Usage records what provider calls cost and keeps their sums.
type Usage struct {
	b       *Bus
	records jetstream.Stream
	rollups jetstream.KeyValue
	folder  jetstream.Consumer
	open    jetstream.KeyValue
}

// rollupEntry is a rollup as stored: the sums and the stream position of
// the newest record folded into them.
type rollupEntry struct {
	chat.UsageRollup
	LastSeq uint64 `json:"lastSeq"`
}

// Usage sets up the usage stream, its rollups and their folder, riding out
// a cluster that is still electing its leaders.
func (b *Bus) Usage(ctx context.Context) (*Usage, error) {
	u := &Usage{b: b}
	err := b.retrying(ctx, "set up usage", func() error { return u.setup(ctx) })
	return u, err
}

func (u *Usage) setup(ctx context.Context) (err error) {
	b := u.b
	u.records, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       usageStream,
		Subjects:   []string{usageSubj + ">"},
		Storage:    jetstream.FileStorage,
		MaxAge:     usageRetention,
		Duplicates: usageDedup,
		Replicas:   b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", usageStream, err)
	}
	u.rollups, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   usageBucket,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", usageBucket, err)
	}
	u.open, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   openBucket,
		TTL:      openKeep,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", openBucket, err)
	}
	u.folder, err = u.records.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       usageConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       foldWait,
		MaxAckPending: 1,
		Replicas:      b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", usageConsumer, err)
	}
	return nil
}

// Record stores what one provider call cost. Recording the same call again
// (same key) within the dedup window is a no-op: fresh is false then.
func (u *Usage) Record(ctx context.Context, rec chat.UsageRecord) (fresh bool, err error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encode usage record: %w", err)
	}
	ack, err := u.b.publishRetrying(ctx, usageSubj+rec.Day(), data, rec.Key())
	if err != nil {
		return false, fmt.Errorf("record usage %s: %w", rec.Key(), err)
	}
	return !ack.Duplicate, nil
}

// Note writes the note of a provider call under way (before the call,
// and again as it streams) without waiting. It goes out on the connection
// before the call's request leaves for the provider, so only a worker
// that dies in the microseconds between could leave a call the provider
// barely saw without a note; a note lost costs the estimate the tokens
// streamed since the one before.
func (u *Usage) Note(oc chat.OpenCall) {
	data, err := json.Marshal(oc)
	if err == nil {
		err = u.b.nc.Publish(openSubj(oc.Record.Key()), data)
	}
	if err != nil {
		u.b.log.Warn("write an open call's note", "call", oc.Record.Key(), "err", err)
	}
}

// Close deletes an open call's note once the call is recorded, without
// waiting: it follows the record on the connection, so it is stored after
// it. Should it be lost, the note stays, and the attempt that finds it
// records the call again under the same key, which the dedup window
// drops; only a note found later than that would count the call twice.
func (u *Usage) Close(oc chat.OpenCall) {
	m := nats.NewMsg(openSubj(oc.Record.Key()))
	m.Header.Set("KV-Operation", "DEL")
	if err := u.b.nc.PublishMsg(m); err != nil {
		u.b.log.Warn("delete an open call's note", "call", oc.Record.Key(), "err", err)
	}
}

// openSubj is the subject an open call's note is stored under, as the KV
// bucket names it.
func openSubj(key string) string { return "$KV." + openBucket + "." + key }

// OpenCalls lists the notes of an answer's calls still open.
func (u *Usage) OpenCalls(ctx context.Context, session, request string) ([]chat.OpenCall, error) {
	return readAllJSON[chat.OpenCall](ctx, u.open, "open calls", chat.AnswerKey(session, request)+".>")
}

// Fold folds records into their rollups until stop is called, calling
// folded for each record once it is in (not for one skipped as folded
// already). Every node may run it: one record is folded at a time.
func (u *Usage) Fold(folded func(chat.UsageRecord)) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			u.foldNext(ctx, folded)
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// foldNext waits for the next record and folds it. One pull at a time,
// acknowledged before the next: with one record in flight on the
// consumer, an ack the server has yet to see would hold the next one back.
func (u *Usage) foldNext(ctx context.Context, folded func(chat.UsageRecord)) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m, err := u.folder.Next(jetstream.FetchContext(fctx))
	cancel()
	if ctx.Err() != nil {
		if m != nil {
			_ = m.Nak() // the next folder takes it at once
		}
		return
	}
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	if err != nil {
		u.b.log.Warn("wait for usage records", "err", err)
		sleepCtx(ctx, time.Second)
		return
	}
	// Within the ack wait: a folder that takes longer is presumed dead.
	wctx, cancel := context.WithTimeout(ctx, foldWait-time.Second)
	defer cancel()
	rec, applied, err := u.fold(wctx, m)
	if err != nil {
		u.b.log.Warn("fold a usage record; it is tried again", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.DoubleAck(wctx); err != nil {
		// Delivered again after the ack wait, and skipped then.
		u.b.log.Warn("ack a folded usage record", "err", err)
	}
	if applied && folded != nil {
		folded(rec)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fold adds one record to its rollup unless the rollup holds it already.
func (u *Usage) fold(ctx context.Context, m jetstream.Msg) (chat.UsageRecord, bool, error) {
	var rec chat.UsageRecord
	meta, err := m.Metadata()
	if err != nil {
		return rec, false, fmt.Errorf("usage record metadata: %w", err)
	}
	if err := json.Unmarshal(m.Data(), &rec); err != nil {
		// A record that cannot be read never will be: it is logged and
		// left out, not retried forever.
		u.b.log.Error("undecodable usage record; left out of the rollups", "seq", meta.Sequence.Stream, "err", err)
		return rec, false, nil
	}
	seq := meta.Sequence.Stream
	key := rollupKey(rec.Day(), rec.Principal, rec.Model)
	applied, err := updateJSON(ctx, u.rollups, key, func(cur *rollupEntry) bool {
		if cur.LastSeq >= seq {
			return false // folded already
		}
		cur.UsageRollup = chat.UsageRollup{Day: rec.Day(), Principal: rec.Principal, Model: rec.Model, Totals: cur.Totals}
		cur.Totals.AddRecord(rec)
		cur.LastSeq = seq
		return true
	})
	if err != nil {
		return rec, false, fmt.Errorf("fold into rollup: %w", err)
	}
	return rec, applied, nil
}

// Pending is how many records are not folded into the rollups yet.
func (u *Usage) Pending(ctx context.Context) (uint64, error) {
	info, err := u.folder.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("usage folder: %w", err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// maxRollupDays bounds a range of days read at once.
const maxRollupDays = 400

// Rollups returns the rollups of the days from to to (YYYY-MM-DD, both
// included), of one principal when principal is not empty.
func (u *Usage) Rollups(ctx context.Context, from, to time.Time, principal string) ([]chat.UsageRollup, error) {
	var filters []string
	for d := from.UTC().Truncate(24 * time.Hour); !d.After(to); d = d.Add(24 * time.Hour) {
		if len(filters) == maxRollupDays {
			return nil, fmt.Errorf("a usage range spans at most %d days", maxRollupDays)
		}
		day := d.Format(chat.DayLayout)
		if principal == "" {
			filters = append(filters, day+".>")
		} else {
			filters = append(filters, day+"."+keyToken(principal)+".*")
		}
	}
	if len(filters) == 0 {
		return nil, nil
	}
	entries, err := readAllJSON[rollupEntry](ctx, u.rollups, "rollups", filters...)
	if err != nil {
		return nil, err
	}
	out := make([]chat.UsageRollup, len(entries))
	for i, e := range entries {
		out[i] = e.UsageRollup
	}
	return out, nil
}

// rollupKey names a rollup: principals and models may hold characters
// a key may not (':' in "key:alice"), so both are base64url.
func rollupKey(day, principal, model string) string {
	return day + "." + keyToken(principal) + "." + keyToken(model)
}

// keyToken is s as a KV key token, never empty.
func keyToken(s string) string {
	return "v" + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(s)), "=")
}
