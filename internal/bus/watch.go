// Live watches: a plain subscription to tc.live.<session> per watched
// session, with gaps filled from the event log (on a solo node, the acks of
// this process's own publishes instead: local.go). Nothing is stored here.

package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

// watch is one session's live delivery on this node.
type watch struct {
	session string
	fn      func(chat.Event)
	ctx     context.Context

	mu   sync.Mutex
	last uint64 // newest position delivered
	// midAnswer: the newest event delivered does not end an answer, so more
	// must come; quietSince is when the last event or probe happened.
	midAnswer  bool
	quietSince time.Time
	// gap: a position was skipped by a solo node's acks; the next live
	// event first reads what the history holds before it (local.go).
	gap atomic.Bool
}

// deliver hands ev to the watcher; w.mu is held.
func (w *watch) deliver(ev chat.Event) {
	w.last = ev.Seq
	w.midAnswer = !ev.Type.Terminal()
	w.quietSince = time.Now()
	w.fn(ev)
}

// fill delivers the stored events in (w.last, to]; w.mu is held.
func (b *Bus) fill(w *watch, to uint64) error {
	return b.ReplayEvents(w.ctx, w.session, w.last+1, to, func(ev chat.Event) error {
		w.deliver(ev)
		return nil
	})
}

// catchUp delivers whatever the session's history holds beyond what the
// watch has delivered: events whose live copy never arrived because this
// connection was away (a NATS node died) or because the stream leader that
// stored them died before republishing them.
func (b *Bus) catchUp(w *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.quietSince = time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	raw, err := b.events.GetLastMsgForSubject(ctx, eventSubject(w.session))
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			b.log.Warn("catch up with session history", "session", w.session, "err", err)
		}
		return
	}
	if raw.Sequence <= w.last {
		return
	}
	b.log.Info("catching up with events missed live", "session", w.session, "from", w.last+1, "to", raw.Sequence)
	if err := b.fill(w, raw.Sequence); err != nil {
		b.log.Warn("catch up with session history", "session", w.session, "err", err)
	}
}

// quietAfter is how long a watch waits mid-answer without an event before it
// asks the history whether it missed some.
const quietAfter = 2 * time.Second

// watchKeeper catches every watch up after the connection comes back, and
// probes the history of watches left silent mid-answer, until stop closes.
func (b *Bus) watchKeeper(reconnected <-chan struct{}, stop <-chan struct{}) {
	tick := time.NewTicker(quietAfter / 2)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-stop:
			return
		case <-reconnected:
			all = true
		case <-tick.C:
		}
		b.watchMu.Lock()
		var due []*watch
		for w := range b.watches {
			w.mu.Lock()
			if all || (w.midAnswer && time.Since(w.quietSince) >= quietAfter) {
				due = append(due, w)
			}
			w.mu.Unlock()
		}
		b.watchMu.Unlock()
		for _, w := range due {
			b.catchUp(w)
		}
	}
}

// Watch delivers, in order, every event of the session stored after the
// position it returns, until stop is called; fn is never called twice at
// once. Live events come from a plain subscription to the republished events
// (no consumer on the server); a gap (a message lost on the way, seen from
// Nats-Last-Sequence) is filled from the history before the event that
// revealed it, and a watch catches up from the history after a reconnect or
// when it falls silent mid-answer. The position is read after the
// subscription is in place, so nothing stored after it can be missed.
func (b *Bus) Watch(ctx context.Context, session string, fn func(chat.Event)) (stop func(), from uint64, err error) {
	w := &watch{session: session, fn: fn, ctx: ctx}
	if b.solo {
		stop, from := b.watchLocal(w)
		return stop, from, nil
	}
	w.mu.Lock() // held until last is known
	sub, err := b.nc.Subscribe(livePrefix+session, func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if m.Header.Get(unstoredHeader) != "" {
			b.deliverUnstored(w, m.Data)
			return
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq <= w.last {
			return // already covered (or not a republished event)
		}
		if prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64); prev > w.last {
			_ = b.fill(w, prev)
		}
		ev, err := decodeEvent(m.Data, seq)
		if err != nil {
			b.log.Error("undecodable event", "session", session, "err", err)
			return
		}
		w.deliver(ev)
	})
	if err != nil {
		w.mu.Unlock()
		return nil, 0, fmt.Errorf("watch %s: %w", session, err)
	}
	if err := b.nc.Flush(); err != nil {
		w.mu.Unlock()
		_ = sub.Unsubscribe()
		return nil, 0, fmt.Errorf("watch %s: %w", session, err)
	}
	_, w.last, err = b.History(ctx)
	from = w.last
	w.quietSince = time.Now()
	w.mu.Unlock()
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, 0, err
	}
	b.watchMu.Lock()
	b.watches[w] = struct{}{}
	b.watchMu.Unlock()
	return func() {
		b.watchMu.Lock()
		delete(b.watches, w)
		b.watchMu.Unlock()
		_ = sub.Unsubscribe()
	}, from, nil
}
