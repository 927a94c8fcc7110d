// Attempts: who answers a request.
//
// KV bucket TC_ATTEMPTS, one key per answer (<session>.<request>), kept a
// day: the attempt that holds the request, and once it ended, its final
// event. Compare-and-set on the key decides between two workers that both
// believe they hold a request; one subscription to the bucket's subject
// tells a worker at once that a newer attempt took its request.

package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const attemptBucket = "TC_ATTEMPTS"

// The bus is the workers' request queue; a claim's revision is its key's
// revision in the attempts bucket.
var _ chat.Queue = (*Bus)(nil)

type attemptRecord struct {
	Attempt uint64      `json:"attempt"`
	Final   *chat.Event `json:"final,omitempty"`
}

func attemptKey(session, request string) string { return chat.AnswerKey(session, request) }

// ClaimAttempt makes this worker the owner of a request, as attempt at
// least min. Claims are compare-and-set on one key, so of two workers that
// both believe they hold the request (a redelivery while the first still
// runs), exactly one can commit its end.
func (b *Bus) ClaimAttempt(ctx context.Context, session, request string, min uint64) (c chat.Claim, err error) {
	err = b.retrying(ctx, "claim "+request, func() error {
		c, err = b.claimAttempt(ctx, session, request, min)
		return err
	})
	return c, err
}

func (b *Bus) claimAttempt(ctx context.Context, session, request string, min uint64) (chat.Claim, error) {
	key := attemptKey(session, request)
	for {
		e, err := b.attempts.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			data, _ := json.Marshal(attemptRecord{Attempt: min})
			rev, err := b.attempts.Create(ctx, key, data)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
			}
			return chat.Claim{Attempt: min, Revision: rev}, nil
		}
		if err != nil {
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		var cur attemptRecord
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		if cur.Final != nil {
			return chat.Claim{Attempt: cur.Attempt, Final: cur.Final}, nil
		}
		next := max(min, cur.Attempt+1)
		data, _ := json.Marshal(attemptRecord{Attempt: next})
		rev, err := b.attempts.Update(ctx, key, data, e.Revision())
		if err != nil {
			if isWrongRevision(err) {
				continue
			}
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		return chat.Claim{Attempt: next, Revision: rev}, nil
	}
}

// CommitAttempt records end as the request's terminal event if the claim
// still holds; chat.ErrSuperseded if a newer attempt has claimed the request.
func (b *Bus) CommitAttempt(ctx context.Context, session, request string, c chat.Claim, end chat.Event) error {
	data, err := json.Marshal(attemptRecord{Attempt: c.Attempt, Final: &end})
	if err != nil {
		return fmt.Errorf("encode end of %s: %w", request, err)
	}
	// A commit whose answer was lost fails its retry with a wrong revision
	// and is taken for superseded: the next delivery then finds the end
	// committed and publishes it, so nothing is lost either way.
	var superseded bool
	err = b.retrying(ctx, "commit "+request, func() error {
		_, err := b.attempts.Update(ctx, attemptKey(session, request), data, c.Revision)
		if isWrongRevision(err) {
			superseded = true
			return nil
		}
		return err
	})
	if superseded {
		return chat.ErrSuperseded
	}
	if err != nil {
		return fmt.Errorf("commit end of %s: %w", request, err)
	}
	return nil
}

func isWrongRevision(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }

// WatchAttempts calls fn with the attempt of every claim on one answer until
// stop is called, so a worker learns when a newer attempt has taken its
// request over. It listens to the claims themselves (the KV bucket's
// subject), not to the session's events, so it costs nothing per token; one
// subscription of the process serves every answer's watch, so it costs no
// goroutine and no round trip per answer either.
func (b *Bus) WatchAttempts(session, request string, fn func(attempt uint64)) (stop func(), err error) {
	key := attemptKey(session, request)
	w := &attemptWatch{fn: fn}
	b.attemptMu.Lock()
	if err := b.watchClaims(); err != nil {
		b.attemptMu.Unlock()
		return nil, fmt.Errorf("watch attempts of %s: %w", request, err)
	}
	if b.attemptWatches[key] == nil {
		b.attemptWatches[key] = make(map[*attemptWatch]struct{})
	}
	b.attemptWatches[key][w] = struct{}{}
	b.attemptMu.Unlock()
	stop = func() {
		b.attemptMu.Lock()
		defer b.attemptMu.Unlock()
		if delete(b.attemptWatches[key], w); len(b.attemptWatches[key]) == 0 {
			delete(b.attemptWatches, key)
		}
	}
	// A claim made before the watch was registered is read instead.
	e, err := b.attempts.Get(context.Background(), key)
	var rec attemptRecord
	if err == nil && json.Unmarshal(e.Value(), &rec) == nil {
		fn(rec.Attempt)
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		stop()
		return nil, fmt.Errorf("watch attempts of %s: %w", request, err)
	}
	return stop, nil
}

// attemptWatch is one WatchAttempts caller.
type attemptWatch struct{ fn func(attempt uint64) }

// watchClaims subscribes, once, to every claim in the attempts bucket and
// hands each to the watches of its key; b.attemptMu is held.
func (b *Bus) watchClaims() error {
	if b.claimSub != nil {
		return nil
	}
	prefix := "$KV." + attemptBucket + "."
	sub, err := b.nc.Subscribe(prefix+">", func(m *nats.Msg) {
		key := strings.TrimPrefix(m.Subject, prefix)
		b.attemptMu.Lock()
		watches := make([]*attemptWatch, 0, len(b.attemptWatches[key]))
		for w := range b.attemptWatches[key] {
			watches = append(watches, w)
		}
		b.attemptMu.Unlock()
		var rec attemptRecord
		if len(watches) == 0 || json.Unmarshal(m.Data, &rec) != nil {
			return // nobody here works on it, or a deletion
		}
		for _, w := range watches {
			w.fn(rec.Attempt)
		}
	})
	if err != nil {
		return err
	}
	// Claims made from here on reach the watches registered after this.
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	b.claimSub = sub
	return nil
}

// setupAttempts creates the attempts' bucket.
func (b *Bus) setupAttempts(ctx context.Context) (err error) {
	b.attempts, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   attemptBucket,
		TTL:      cancelMarkTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", attemptBucket, err)
	}
	return nil
}
