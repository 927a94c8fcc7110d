package stream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/hub"
)

// This file owns following one session's events for a transport that
// streams one answer per HTTP response (the AI SDK's UI message stream,
// AG-UI): the hub's subscribe-then-replay, the answer's events handed to
// the handler in order, and a bounded queue between them.

// ErrSlow says the reader fell further behind the live events than the queue
// holds: the client reconnects and resumes from the durable log.
var ErrSlow = errors.New("the stream fell too far behind the answer")

// Hub is the node's fan-out, as a follower uses it.
type Hub interface {
	Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error)
}

// Follower is one session's events, live and replayed, in the hub's order:
// nothing lost, doubled or reordered.
type Follower struct {
	events   chan chat.Event
	slow     chan struct{}
	once     sync.Once
	attached chan struct{} // closed once live events are collected

	cancel context.CancelFunc
	done   chan struct{} // closed once the subscribing goroutine is over
	mu     sync.Mutex
	sub    *hub.Subscriber
	err    error // why subscribing failed
}

// Follow subscribes to a session: from after the cursor after when it is
// set, else from the START of the answer in flight. At most queue events
// wait for Next; a reader further behind gets ErrSlow.
func Follow(ctx context.Context, h Hub, session string, after *uint64, queue int) *Follower {
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{events: make(chan chat.Event, queue), slow: make(chan struct{}), attached: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	// Subscribing replays history into the queue Next drains, so it runs
	// beside the reader; Close waits for it.
	go func() {
		defer close(f.done)
		sub, err := h.Subscribe(ctx, session, after, followSink{f})
		f.mu.Lock()
		f.sub, f.err = sub, err
		f.mu.Unlock()
	}()
	return f
}

// followSink feeds a follower's queue: live events without waiting (a full
// queue marks the follower slow), history waiting for room.
type followSink struct{ f *Follower }

// Attached implements hub.Attacher.
func (s followSink) Attached() { close(s.f.attached) }

func (s followSink) Deliver(sh *hub.Shared) bool {
	select {
	case s.f.events <- sh.Event:
		return true
	default:
		s.f.once.Do(func() { close(s.f.slow) })
		return false
	}
}

func (s followSink) Replay(ctx context.Context, sh *hub.Shared) error {
	select {
	case s.f.events <- sh.Event:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Attached waits until the follower receives live events, so a question
// asked after it returns cannot be missed. It fails with ctx's error or the
// error subscribing ended with.
func (f *Follower) Attached(ctx context.Context) error {
	select {
	case <-f.attached:
		return nil
	case <-f.done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Next returns the next event of the session. It fails with ctx's error,
// ErrSlow, or the error subscribing ended with.
func (f *Follower) Next(ctx context.Context) (chat.Event, error) {
	return f.wait(ctx, nil, nil, nil)
}

// wait is Next that also gives up with errIdle when idle ticks, errExpired
// when expired is closed and errClosing when closing is.
func (f *Follower) wait(ctx context.Context, idle <-chan time.Time, expired, closing <-chan struct{}) (chat.Event, error) {
	done := f.done
	for {
		select {
		case ev := <-f.events:
			return ev, nil
		case <-f.slow:
			return chat.Event{}, ErrSlow
		case <-ctx.Done():
			return chat.Event{}, ctx.Err()
		case <-idle:
			return chat.Event{}, errIdle
		case <-expired:
			return chat.Event{}, errExpired
		case <-closing:
			return chat.Event{}, errClosing
		case <-done:
			f.mu.Lock()
			err := f.err
			f.mu.Unlock()
			if err != nil {
				return chat.Event{}, err
			}
			done = nil // subscribed: only events from now on
		}
	}
}

// Close detaches the follower from the hub and waits for it.
func (f *Follower) Close() {
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sub != nil {
		f.sub.Close()
		f.sub = nil
	}
}
