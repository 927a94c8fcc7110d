// The event log.
//
// Stream TC_EVENTS, subjects tc.ev.<session>: every event of every answer,
// kept --event-retention, each stored event republished on tc.live.<session>
// with its position (see watch.go). Direct gets are allowed, for replays.
// Events are published through one goroutine, asynchronously (publishEvents).

package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	eventsStream = "TC_EVENTS"
	eventsPrefix = "tc.ev."
	// Stored events are republished here, with their stream sequence in
	// headers, for live delivery over plain subscriptions (no consumer).
	livePrefix = "tc.live."
)

// startPublisher subscribes to the acks of the events publishEvents
// publishes: JetStream answers each on its reply subject, ackPrefix and the
// event's id.
func (b *Bus) startPublisher() error {
	b.ackPrefix = nats.NewInbox() + "."
	sub, err := b.nc.Subscribe(b.ackPrefix+"*", b.onAck)
	if err != nil {
		return fmt.Errorf("subscribe to event acks: %w", err)
	}
	// At most publishQueue acks are ever due.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("subscribe to event acks: %w", err)
	}
	b.ackSub = sub
	return nil
}

// eventDedupWindow is how long the events stream remembers a message id:
// long enough for a publish to be retried (publishRetryFor, plus the wait
// for its ack) and for a request to be redelivered after its worker died
// (twice the ack wait), so the event a new attempt publishes again is a
// no-op. No longer: the stream holds every id of the window in memory, one
// per token, and at tens of thousands of tokens a second two minutes of them
// was most of the live heap.
func eventDedupWindow(cfg Config) time.Duration {
	return min(max(publishRetryFor+eventAckWait, 2*cfg.AckWait), cfg.EventRetention)
}

// compactID is the message id an event is published under: 22 characters
// (128 bits of SHA-256) instead of the ~85 of session, request, attempt,
// index and type, as each is stored with its event, sent with its live copy
// and held by the stream for the dedup window.
func compactID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func eventSubject(session string) string { return eventsPrefix + session }

// PublishEvent appends an event to its session's history and delivers it to
// the session's watchers. It returns the event's position in the history.
// msgID, when set, makes a retried publish of the same event a no-op.
func (b *Bus) PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error) {
	data, err := encodeEvent(&ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	var seq uint64
	publish := func() (err error) {
		seq, err = b.publishEvent(ctx, eventSubject(ev.SessionID), data, msgID, ev.SessionID)
		return err
	}
	if msgID == "" {
		err = publish()
	} else {
		err = b.retrying(ctx, "publish "+eventSubject(ev.SessionID), publish)
	}
	if err != nil {
		return 0, fmt.Errorf("publish %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return seq, nil
}

// PublishEventAfter publishes an event of an answer whose previous event is
// at position after, without a message id: the stream would remember one for
// every token for its whole dedup window. A publish that fails may still have
// landed (its ack was lost), so before publishing it again it is looked for
// among the session's events after the previous one; the connection keeps
// nothing to send after a reconnect, so a failed publish cannot land after
// that look.
func (b *Bus) PublishEventAfter(ctx context.Context, ev chat.Event, after uint64) (uint64, error) {
	data, err := encodeEvent(&ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	subject := eventSubject(ev.SessionID)
	// Stored at the first try, as nearly always: nothing else to do.
	seq, err := b.publishEvent(ctx, subject, data, "", ev.SessionID)
	if err == nil {
		return seq, nil
	}
	again := ev // on the heap only on this path
	if seq, err = b.publishAgainAfter(ctx, &again, data, after, err); err != nil {
		return 0, fmt.Errorf("publish %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return seq, nil
}

// errUnseen: an unacknowledged publish has not landed, and may yet.
var errUnseen = errors.New("an unacknowledged publish has not landed yet")

// publishAgainAfter is PublishEventAfter once its first publish failed with
// err.
func (b *Bus) publishAgainAfter(ctx context.Context, ev *chat.Event, data []byte, after uint64, err error) (uint64, error) {
	subject := eventSubject(ev.SessionID)
	var (
		seq      uint64
		timedOut time.Time // when a publish last went unacknowledged
	)
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		timedOut = time.Now()
	}
	if err := b.storageFault(err); errors.Is(err, chat.ErrStorageFull) || ctx.Err() != nil {
		return 0, err
	}
	err = b.retrying(ctx, "publish "+subject, func() (err error) {
		var found bool
		if seq, found, err = b.landed(ctx, ev, after); err != nil || found {
			if found {
				b.log.Info("a publish reported failed had landed", "session", ev.SessionID, "request", ev.RequestID, "index", ev.Index, "seq", seq)
			}
			return err
		}
		// Unacknowledged is not lost: a stream far behind may store it
		// yet. It is given as long again before it is published again.
		if !timedOut.IsZero() && time.Since(timedOut) < eventAckWait {
			return errUnseen
		}
		seq, err = b.publishEvent(ctx, subject, data, "", ev.SessionID)
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			timedOut = time.Now()
		}
		return err
	})
	return seq, err
}

// landed looks for ev among its session's events after position after:
// the same answer, attempt, index and type.
func (b *Bus) landed(ctx context.Context, ev *chat.Event, after uint64) (seq uint64, found bool, err error) {
	subject := eventSubject(ev.SessionID)
	for from := after + 1; ; from = seq + 1 {
		var data []byte
		data, seq, found, err = b.leaderNext(ctx, subject, from)
		if err != nil || !found {
			return 0, false, err
		}
		got, err := decodeEvent(data, seq)
		if err == nil && got.RequestID == ev.RequestID && got.Attempt == ev.Attempt && got.Index == ev.Index && got.Type == ev.Type {
			return seq, true, nil
		}
	}
}

// leaderNext reads the first message of subject at or after position from
// in the events stream, from the stream's leader: a direct get may be
// answered by a replica that has not caught up with what was acknowledged.
func (b *Bus) leaderNext(ctx context.Context, subject string, from uint64) (data []byte, seq uint64, found bool, err error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, subject})
	if err != nil {
		return nil, 0, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+eventsStream, req)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read %s from %d: %w", subject, from, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, false, fmt.Errorf("read %s from %d: %w", subject, from, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return nil, 0, false, nil
	case resp.Error != nil:
		return nil, 0, false, fmt.Errorf("read %s from %d: %s", subject, from, resp.Error.Description)
	case resp.Message == nil:
		return nil, 0, false, fmt.Errorf("read %s from %d: an empty answer", subject, from)
	}
	return resp.Message.Data, resp.Message.Seq, true, nil
}

// publishQueue bounds the events waiting for publishEvents, and those
// published and waiting for their acknowledgement.
const publishQueue = 4096

// eventAckWait is how long a published event may wait for the stream's
// acknowledgement before it counts as failed.
const eventAckWait = 5 * time.Second

// publishes are eventPublish values for reuse: one per event otherwise.
var publishes = sync.Pool{New: func() any {
	return &eventPublish{msg: new(nats.Msg), done: make(chan struct{}, 1)}
}}

// eventPublish is one event on its way through publishEvents; done gets one
// value when seq or err is set.
type eventPublish struct {
	msg     *nats.Msg
	session string // whose event msg is, for a solo node's live delivery; "" for a probe
	sent    time.Time
	seq     uint64
	err     error
	done    chan struct{}
}

// publishEvent hands an event to publishEvents and waits for its ack.
// Thousands of answers streaming at once would otherwise each take the
// connection's lock for a request of their own, and convoy on it. session is
// the event's ("" for a probe): on a solo node its ack delivers it live.
func (b *Bus) publishEvent(ctx context.Context, subject string, data []byte, msgID, session string) (uint64, error) {
	p := publishes.Get().(*eventPublish)
	*p.msg = nats.Msg{Subject: subject, Data: data}
	if msgID != "" {
		p.msg.Header = nats.Header{jetstream.MsgIDHeader: []string{compactID(msgID)}}
	}
	p.session = session
	select {
	case b.toPublish <- p:
	case <-ctx.Done():
		publishes.Put(p)
		return 0, ctx.Err()
	case <-b.keeperDone:
		publishes.Put(p)
		return 0, nats.ErrConnectionClosed
	}
	// Once handed over, p is reused only after its result was taken: one
	// given up on may still be published and acknowledged.
	select {
	case <-p.done:
		seq, err := p.seq, p.err
		*p.msg = nats.Msg{}
		p.session, p.seq, p.err = "", 0, nil
		publishes.Put(p)
		return seq, err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.keeperDone: // closing: it may or may not be published
		return 0, nats.ErrConnectionClosed
	}
}

// publishEvents publishes the queued events without waiting for their acks,
// at most publishQueue of them unacknowledged: JetStream's ack comes to
// onAck; an event without one after eventAckWait fails with
// jetstream.ErrAsyncPublishTimeout (it may still be stored).
//
// This is JetStream's publish without nats.go's jetstream package around it:
// that one costs a timer, a reply subject built from random bytes and an ack
// decoded by reflection per event, about a third of what the client
// allocates per token (BENCHMARKS.md).
func (b *Bus) publishEvents() {
	expire := time.NewTicker(eventAckWait / 5)
	defer expire.Stop()
	for {
		var p *eventPublish
		select {
		case <-b.keeperDone:
			return // what is still queued is failed by its caller
		case <-expire.C:
			b.expireAcks()
			continue
		case p = <-b.toPublish:
		}
		for p != nil {
			select {
			case <-b.keeperDone:
				return
			case <-expire.C:
				b.expireAcks()
			case b.room <- struct{}{}:
				b.lastID++
				id := b.lastID
				p.msg.Reply = b.ackPrefix + strconv.FormatUint(id, 36)
				p.sent = time.Now()
				b.awaitMu.Lock()
				b.awaiting[id] = p
				b.awaitMu.Unlock()
				if err := b.nc.PublishMsg(p.msg); err != nil {
					b.acked(id, 0, err)
				}
				p = nil
			}
		}
	}
}

// expireAcks fails the events that waited longer than eventAckWait.
func (b *Bus) expireAcks() {
	var due []uint64
	b.awaitMu.Lock()
	for id, p := range b.awaiting {
		if time.Since(p.sent) > eventAckWait {
			due = append(due, id)
		}
	}
	b.awaitMu.Unlock()
	for _, id := range due {
		b.acked(id, 0, jetstream.ErrAsyncPublishTimeout)
	}
}

// onAck takes JetStream's answer to a published event.
func (b *Bus) onAck(m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, b.ackPrefix), 36, 64)
	if err != nil {
		return
	}
	seq, err := parseAck(m)
	b.acked(id, seq, err)
}

// parseAck reads a JetStream publish ack, {"stream":…,"seq":N,…}, or the
// error in its place.
func parseAck(m *nats.Msg) (uint64, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return 0, jetstream.ErrNoStreamResponse
	}
	if i := bytes.Index(m.Data, []byte(`"seq":`)); i >= 0 && !bytes.Contains(m.Data, []byte(`"error"`)) {
		digits := m.Data[i+len(`"seq":`):]
		n := 0
		for n < len(digits) && '0' <= digits[n] && digits[n] <= '9' {
			n++
		}
		if seq, err := strconv.ParseUint(string(digits[:n]), 10, 64); err == nil && seq > 0 {
			return seq, nil
		}
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("event ack %q: %w", m.Data, err)
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	return 0, fmt.Errorf("event ack without a position: %q", m.Data)
}

// acked hands a published event its position, or why it failed, once.
func (b *Bus) acked(id uint64, seq uint64, err error) {
	b.awaitMu.Lock()
	p := b.awaiting[id]
	delete(b.awaiting, id)
	b.awaitMu.Unlock()
	if p == nil {
		return
	}
	<-b.room
	if b.solo && err == nil {
		b.ackedLive(p.session, p.msg.Data, seq)
	}
	p.seq, p.err = seq, err
	p.done <- struct{}{}
}

// LastEvent returns the newest event of a session, or nil when it has none.
func (b *Bus) LastEvent(ctx context.Context, session string) (*chat.Event, error) {
	raw, err := b.events.GetLastMsgForSubject(ctx, eventSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last event of %s: %w", session, err)
	}
	ev, err := decodeEvent(raw.Data, raw.Sequence)
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

// History bounds: the first and last position currently held.
func (b *Bus) History(ctx context.Context) (first, last uint64, err error) {
	info, err := b.events.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("events stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

func decodeEvent(data []byte, seq uint64) (chat.Event, error) {
	var ev chat.Event
	if err := unmarshalEvent(data, &ev); err != nil {
		return ev, fmt.Errorf("decode event %d: %w", seq, err)
	}
	ev.Seq = seq
	return ev, nil
}

// ReplayEvents calls fn for each event of the session with a position in
// [from, to], in order.
func (b *Bus) ReplayEvents(ctx context.Context, session string, from, to uint64, fn func(chat.Event) error) error {
	return readRange(ctx, b.events, eventSubject(session), from, to, func(data []byte, seq uint64) error {
		ev, err := decodeEvent(data, seq)
		if err != nil {
			return err
		}
		return fn(ev)
	})
}

// readRange reads the messages of one subject with positions in [from, to],
// one direct get at a time: no consumer is created, so nothing is left on the
// server however many reads run.
func readRange(ctx context.Context, s jetstream.Stream, subject string, from, to uint64, fn func([]byte, uint64) error) error {
	for seq := max(from, 1); seq <= to; {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s at %d: %w", subject, seq, err)
		}
		if raw.Sequence > to {
			return nil
		}
		if err := fn(raw.Data, raw.Sequence); err != nil {
			return err
		}
		seq = raw.Sequence + 1
	}
	return nil
}

// setupEvents creates the events stream.
func (b *Bus) setupEvents(ctx context.Context) (err error) {
	// A solo node delivers live from its acks (local.go): nothing
	// republished.
	var republish *jetstream.RePublish
	if !b.solo {
		republish = &jetstream.RePublish{Source: eventsPrefix + ">", Destination: livePrefix + ">"}
	}
	b.events, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        eventsStream,
		Subjects:    []string{eventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.EventRetention,
		Duplicates:  eventDedupWindow(b.cfg),
		AllowDirect: true,
		Replicas:    b.cfg.Replicas,
		RePublish:   republish,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", eventsStream, err)
	}
	if b.solo {
		info, err := b.events.Info(ctx)
		if err != nil {
			return fmt.Errorf("events stream info: %w", err)
		}
		b.lastAcked = info.State.LastSeq
	}
	return nil
}
