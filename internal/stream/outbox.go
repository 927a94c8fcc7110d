package stream

import "sync"

// Outbox is a connection's bounded queue of frames and the keeper of its
// writer. Unlike a buffered channel, it holds no memory while empty, and no
// goroutine either: a writer is started when a frame is queued and exits once
// the queue is drained, so an idle connection costs a few words. (SSE, whose
// writer is its handler, is woken by start instead.)
type Outbox struct {
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

// Room is signalled when the writer takes frames, so a sender that found the
// queue full may try again.
func (o *Outbox) Room() <-chan struct{} { return o.room }

// NewOutbox returns an outbox of at most max frames and maxBytes bytes
// (0: no byte bound); start runs a writer, which calls Next until the queue
// is drained.
func NewOutbox(max, maxBytes int, start func()) *Outbox {
	return &Outbox{max: max, maxBytes: maxBytes, start: start, room: make(chan struct{}, 1)}
}

// Push queues a frame and sees that a writer runs; false when the queue is
// full, in frames or in bytes. A frame larger than the byte bound alone
// still goes when nothing else is pending (results have their own bound).
func (o *Outbox) Push(frame []byte) bool {
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

// Shut tells the writer to close the connection, starting one if none runs.
func (o *Outbox) Shut() {
	o.mu.Lock()
	o.closing = true
	o.wake()
}

// wake starts a writer unless one runs; it unlocks o.mu.
func (o *Outbox) wake() {
	start := !o.running
	o.running = true
	o.mu.Unlock()
	if start {
		o.start()
	}
}

// Next is the writer's turn: the queued frames to write, or closing when it
// must close the connection instead. Neither means the queue is drained and
// the writer must exit; the next push starts another.
func (o *Outbox) Next() (batch [][]byte, closing bool) {
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

// Take returns every queued frame, oldest first, for the writer that is
// closing the connection.
func (o *Outbox) Take() [][]byte {
	o.mu.Lock()
	batch := o.swap()
	o.mu.Unlock()
	o.signalRoom()
	return batch
}

// swap hands out the queued frames; the slice is the Outbox's own and valid
// until the next swap. o.mu is held.
func (o *Outbox) swap() [][]byte {
	batch := o.frames
	o.writing, o.queued = o.queued, 0
	clear(o.spare)
	o.frames, o.spare = o.spare[:0], batch
	if cap(o.frames) > 4*o.max {
		o.frames = nil
	}
	return batch
}

func (o *Outbox) signalRoom() {
	select {
	case o.room <- struct{}{}:
	default:
	}
}
