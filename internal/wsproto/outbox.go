package wsproto

import "sync"

// outbox is a connection's bounded queue of frames and the keeper of its
// writer. Unlike a buffered channel, it holds no memory while empty, and no
// goroutine either: a writer is started when a frame is queued and exits once
// the queue is drained, so an idle connection costs a few words.
type outbox struct {
	max      int    // frames queued
	maxBytes int    // bytes queued or being written; 0: no bound
	start    func() // runs a writer on a new goroutine

	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	queued  int  // bytes in frames
	writing int  // bytes of the batch the writer holds
	running bool // a writer is draining (or closing)
	closing bool // the writer must close the connection

	room chan struct{} // signalled when the writer takes frames
}

func newOutbox(max, maxBytes int, start func()) *outbox {
	return &outbox{max: max, maxBytes: maxBytes, start: start, room: make(chan struct{}, 1)}
}

// push queues a frame and sees that a writer runs; false when the queue is
// full, in frames or in bytes. A frame larger than the byte bound alone
// still goes when nothing else is pending (results have their own bound).
func (o *outbox) push(frame []byte) bool {
	o.mu.Lock()
	pending := o.queued + o.writing
	if len(o.frames) >= o.max || (o.maxBytes > 0 && pending > 0 && pending+len(frame) > o.maxBytes) {
		o.mu.Unlock()
		return false
	}
	o.frames = append(o.frames, frame)
	o.queued += len(frame)
	o.wake()
	return true
}

// shut tells the writer to close the connection, starting one if none runs.
func (o *outbox) shut() {
	o.mu.Lock()
	o.closing = true
	o.wake()
}

// wake starts a writer unless one runs; it unlocks o.mu.
func (o *outbox) wake() {
	start := !o.running
	o.running = true
	o.mu.Unlock()
	if start {
		o.start()
	}
}

// next is the writer's turn: the queued frames to write, or closing when it
// must close the connection instead. Neither means the queue is drained and
// the writer must exit; the next push starts another.
func (o *outbox) next() (batch [][]byte, closing bool) {
	o.mu.Lock()
	o.writing = 0 // the previous batch is written
	if o.closing {
		o.mu.Unlock()
		return nil, true
	}
	if len(o.frames) == 0 {
		o.running = false
		// Keep no memory for an idle connection.
		o.frames, o.spare = nil, nil
		o.mu.Unlock()
		return nil, false
	}
	batch = o.swap()
	o.mu.Unlock()
	o.signalRoom()
	return batch, false
}

// take returns every queued frame, oldest first, for the writer that is
// closing the connection.
func (o *outbox) take() [][]byte {
	o.mu.Lock()
	batch := o.swap()
	o.mu.Unlock()
	o.signalRoom()
	return batch
}

// swap hands out the queued frames; the slice is the outbox's own and valid
// until the next swap. o.mu is held.
func (o *outbox) swap() [][]byte {
	batch := o.frames
	o.writing, o.queued = o.queued, 0
	clear(o.spare)
	o.frames, o.spare = o.spare[:0], batch
	if cap(o.frames) > 4*o.max {
		o.frames = nil
	}
	return batch
}

func (o *outbox) signalRoom() {
	select {
	case o.room <- struct{}{}:
	default:
	}
}
