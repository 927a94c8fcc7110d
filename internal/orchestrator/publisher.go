package orchestrator

import (
	"context"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns how an answer's events reach the store: in order, one at
// a time, by a goroutine of the answer's own, so that the model and the
// tools go on while an event waits for its acknowledgement. A worker
// waited for every event's round trip before: the provider's stream
// paused once per token flush, and an agent step paid a round trip for
// each of its events (tool call start, input, call, step, result).
//
// What must be stored before something else happens is still waited for:
// a settle waits until every event handed over is stored (or one failed),
// and the end of an answer is committed only after one. Turn records are
// written by the worker itself, synchronously, so an event handed over
// after a turn is stored (a tool result) is shown only after it.

// pubQueue bounds the events an answer hands over and the store has yet to
// acknowledge: a store that falls behind holds the model back past it.
const pubQueue = 32

// pubItem is an event to publish, or (reply set, no event) a marker that
// asks to be told once everything before it is stored.
type pubItem struct {
	ctx   context.Context
	ev    chat.Event
	reply chan pubReply
	event bool
}

type pubReply struct {
	seq uint64
	err error
}

// pubState is the publisher's own state: only its goroutine writes it.
type pubState struct {
	lastSeq uint64 // the position of the newest event stored
	// err is the first publish that failed; failedIndex its index. Events
	// after it are not published: the answer's index goes on from it.
	err         error
	failedIndex int
}

// handOver queues ev for the publisher, starting it if need be, and
// returns at once; reply, when not nil, is told when it is stored. Called
// with pubMu held, so that events are queued in index order.
func (a *answer) handOver(ctx context.Context, ev chat.Event, reply chan pubReply) error {
	if a.pubQ == nil {
		a.pubQ = make(chan pubItem, pubQueue)
		a.pubDone = make(chan struct{})
		go a.publisher()
	}
	select {
	case a.pubQ <- pubItem{ctx: ctx, ev: ev, reply: reply, event: true}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publisher publishes the answer's events in the order they were handed
// over, until the queue is closed.
func (a *answer) publisher() {
	defer close(a.pubDone)
	st := &a.pub
	for it := range a.pubQ {
		if !it.event {
			it.reply <- pubReply{seq: st.lastSeq, err: st.err}
			continue
		}
		if st.err == nil && a.superseded.Load() {
			st.err, st.failedIndex = chat.ErrSuperseded, it.ev.Index
			a.pubFailed.Store(true)
		}
		if st.err != nil {
			if it.reply != nil {
				it.reply <- pubReply{err: st.err}
			}
			continue
		}
		seq, err := a.store(it.ctx, it.ev, st.lastSeq)
		if err != nil {
			st.err, st.failedIndex = err, it.ev.Index
			a.pubFailed.Store(true)
		} else {
			st.lastSeq = seq
			a.recorder.Published()
		}
		if it.reply != nil {
			it.reply <- pubReply{seq: seq, err: err}
		}
	}
}

// store publishes one event after the one at position after.
func (a *answer) store(ctx context.Context, ev chat.Event, after uint64) (uint64, error) {
	if ev.Type == chat.EventDelta && after > 0 {
		// One per token: published without a message id, which the stream
		// would hold in memory for its whole dedup window.
		return a.queue.PublishEventAfter(ctx, ev, after)
	}
	return a.queue.PublishEvent(ctx, ev, eventID(ev))
}

// settle waits until every event handed over is stored, and returns the
// error of the first that could not be; the answer's index then goes on
// from that event, so an answer that ends without its store (storageFull)
// has no gap. Called with pubMu held.
func (a *answer) settle(ctx context.Context) error {
	if a.pubQ == nil {
		return a.pubErr
	}
	reply := make(chan pubReply, 1)
	select {
	case a.pubQ <- pubItem{reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	var r pubReply
	select {
	case r = <-reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.noteFailure(r.err)
	return a.pubErr
}

// noteFailure records the publisher's first failure once the worker has
// seen it. Called with pubMu held.
func (a *answer) noteFailure(err error) {
	if err == nil || a.pubErr != nil {
		return
	}
	a.pubErr = err
	// Read after the publisher replied: it wrote failedIndex before.
	a.index = a.pub.failedIndex
	a.stored(err)
}

// stopPublishing ends the publisher once what it was handed is stored or
// refused. An answer's worker calls it when the answer is over.
func (a *answer) stopPublishing() {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	if a.pubQ == nil {
		return
	}
	close(a.pubQ)
	<-a.pubDone
	a.pubQ = nil
	a.noteFailure(a.pub.err)
}
