package wsproto

import "sync"

// outbox is a connection's bounded queue of frames. Unlike a buffered
// channel, it holds no memory while empty: an idle connection costs a few
// words, not its whole capacity.
type outbox struct {
	max int

	mu     sync.Mutex
	frames [][]byte
	spare  [][]byte

	ready chan struct{} // signalled when frames are queued
	room  chan struct{} // signalled when the writer takes frames
}

func newOutbox(max int) *outbox {
	return &outbox{max: max, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push queues a frame; false when the queue is full.
func (o *outbox) push(frame []byte) bool {
	o.mu.Lock()
	if len(o.frames) >= o.max {
		o.mu.Unlock()
		return false
	}
	o.frames = append(o.frames, frame)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns every queued frame, oldest first. The slice is the outbox's
// own and valid until the next take.
func (o *outbox) take() [][]byte {
	o.mu.Lock()
	batch := o.frames
	clear(o.spare)
	o.frames, o.spare = o.spare[:0], batch
	if len(batch) == 0 || cap(o.frames) > 4*o.max {
		// Keep no memory for an idle connection.
		o.frames, o.spare = nil, nil
	}
	o.mu.Unlock()
	select {
	case o.room <- struct{}{}:
	default:
	}
	return batch
}
