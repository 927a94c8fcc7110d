package stream

import (
	"context"
	"errors"
	"time"

	"github.com/tokencast/tokencast/internal/hub"
)

// ErrClosed says the connection is closing: nothing more is queued for it.
var ErrClosed = errors.New("connection closed")

// Queue is a connection's outgoing side as its operations use it: frames go
// into its outbox without waiting, and a connection whose outbox overflows is
// closed as a slow consumer (it reconnects and resumes from its cursor), never
// waited for.
type Queue struct {
	// Out holds the frames until the connection's writer sends them.
	Out *Outbox
	// Closing is closed once the connection is closing.
	Closing <-chan struct{}
	// Slow closes the connection as a slow consumer.
	Slow func()
	// ReplayTimeout bounds how long history waits for room in Out.
	ReplayTimeout time.Duration
}

// Send queues a frame; false when the connection is closing, or too slow to
// take it and closing now.
func (q *Queue) Send(frame []byte) bool {
	select {
	case <-q.Closing:
		return false
	default:
	}
	if q.Out.Push(frame) {
		return true
	}
	q.Slow()
	return false
}

// SendWaiting queues a frame of history, which may be longer than the queue:
// it waits for room, up to ReplayTimeout, then closes the connection as too
// slow. It fails with ErrClosed or ctx's error.
func (q *Queue) SendWaiting(ctx context.Context, frame []byte) error {
	t := time.NewTimer(q.ReplayTimeout)
	defer t.Stop()
	for !q.Out.Push(frame) {
		select {
		case <-q.Out.Room():
		case <-q.Closing:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			q.Slow()
			return ErrClosed
		}
	}
	return nil
}

// Sink is a subscription as the hub feeds it (hub.Sink): each event framed
// for its transport (Frame uses the encoding the hub shares between every
// subscriber of the same selection) and queued on its connection.
type Sink struct {
	Queue *Queue
	Frame func(*hub.Shared) []byte
}

// Deliver implements hub.Sink: a live event, never waited for. An event
// Frame gives no frame for (one the subscriber did not ask for) is skipped.
func (s Sink) Deliver(sh *hub.Shared) bool {
	frame := s.Frame(sh)
	if frame == nil {
		return true
	}
	return s.Queue.Send(frame)
}

// Replay implements hub.Sink: an event of history, waited for.
func (s Sink) Replay(ctx context.Context, sh *hub.Shared) error {
	frame := s.Frame(sh)
	if frame == nil {
		return nil
	}
	return s.Queue.SendWaiting(ctx, frame)
}
