// Live delivery on a solo node: the embedded NATS has no listener and no
// cluster, so every event of the log is published by this process, through
// publishEvents on its one connection, and JetStream acknowledges them in the
// order it stores them. The ack is then the live copy: a stored event goes to
// this node's watches when its ack arrives, with no republish through NATS
// and no decoding (a token costs one message and its ack, not three). A
// position skipped by the acks (an event stored after its ack timed out) is
// read from the history before the next live event, so nothing is missed; the
// watch keeper's quiet probe covers an answer that stops on such a gap.

package bus

import (
	"slices"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// ackedLive delivers a stored event to the local watches of its session. It
// runs on the ack handler's goroutine, in store order; session is "" for a
// probe.
// Watches get the event as stored (data decoded), exactly what a replay of it
// gives: encoding normalizes some fields (a tool's JSON input, the time).
func (b *Bus) ackedLive(session string, data []byte, seq uint64) {
	b.watchMu.Lock()
	if seq <= b.lastAcked {
		// A duplicate's ack: the event is stored, and was delivered, once.
		b.watchMu.Unlock()
		return
	}
	if seq > b.lastAcked+1 {
		for w := range b.watches {
			w.gap.Store(true)
		}
	}
	b.lastAcked = seq
	var watches []*watch
	if session != "" {
		watches = b.local[session]
	}
	b.watchMu.Unlock()
	if len(watches) == 0 {
		return
	}
	stored, err := decodeEvent(data, seq)
	if err != nil {
		b.log.Error("undecodable event", "session", session, "err", err)
		return
	}
	for _, w := range watches {
		w.mu.Lock()
		if seq > w.last {
			if w.gap.Swap(false) {
				if err := b.fill(w, seq-1); err != nil {
					b.log.Warn("fill a gap in live events", "session", w.session, "err", err)
				}
			}
			w.deliver(stored)
		}
		w.mu.Unlock()
	}
}

// watchLocal starts a solo node's watch: from the newest position
// acknowledged, every later one comes from the acks.
func (b *Bus) watchLocal(w *watch) (stop func(), from uint64) {
	// Deliveries may begin as soon as it is registered.
	w.quietSince = time.Now()
	b.watchMu.Lock()
	w.last = b.lastAcked
	from = w.last
	b.watches[w] = struct{}{}
	b.local[w.session] = append(slices.Clip(b.local[w.session]), w)
	b.watchMu.Unlock()
	return func() {
		b.watchMu.Lock()
		delete(b.watches, w)
		rest := slices.DeleteFunc(slices.Clone(b.local[w.session]), func(x *watch) bool { return x == w })
		if len(rest) == 0 {
			delete(b.local, w.session)
		} else {
			b.local[w.session] = rest
		}
		b.watchMu.Unlock()
	}, from
}

// announceLocal delivers an event that could not be stored to the local
// watches of its session.
func (b *Bus) announceLocal(ev chat.Event) {
	b.watchMu.Lock()
	watches := b.local[ev.SessionID]
	b.watchMu.Unlock()
	ev.Seq = 0
	for _, w := range watches {
		w.mu.Lock()
		if ev.Type.Terminal() {
			w.midAnswer = false
		}
		w.fn(ev)
		w.mu.Unlock()
	}
}
