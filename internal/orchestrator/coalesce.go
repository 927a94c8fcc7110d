package orchestrator

import (
	"strings"
	"sync"
	"time"
)

// Coalescing says when buffered deltas are flushed as one event: after Window,
// at Bytes, or at Chunks provider chunks, whichever comes first. The first
// delta of an answer is never held back.
type Coalescing struct {
	Window time.Duration
	Bytes  int
	Chunks int
}

// coalescer buffers text chunks and hands them to flush in order. flush runs
// under the coalescer's lock, so events are published one at a time even when
// the window timer fires while the provider emits.
type coalescer struct {
	cfg   Coalescing
	flush func(text string) error

	mu     sync.Mutex
	sent   bool
	buf    strings.Builder
	chunks int
	timer  *time.Timer
	err    error // first flush failure; later chunks are refused with it
}

func newCoalescer(cfg Coalescing, flush func(string) error) *coalescer {
	return &coalescer{cfg: cfg, flush: flush}
}

// Add takes one provider chunk.
func (c *coalescer) Add(text string) error {
	if text == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if !c.sent {
		c.sent = true
		c.err = c.flush(text)
		return c.err
	}
	c.buf.WriteString(text)
	c.chunks++
	if (c.cfg.Bytes > 0 && c.buf.Len() >= c.cfg.Bytes) || (c.cfg.Chunks > 0 && c.chunks >= c.cfg.Chunks) || c.cfg.Window <= 0 {
		return c.flushLocked()
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(c.cfg.Window, c.onTimer)
	}
	return nil
}

func (c *coalescer) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if c.err == nil {
		_ = c.flushLocked()
	}
}

func (c *coalescer) flushLocked() error {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.buf.Len() == 0 {
		return nil
	}
	text := c.buf.String()
	c.buf.Reset()
	c.chunks = 0
	if err := c.flush(text); err != nil {
		c.err = err
	}
	return c.err
}

// Flush hands what is buffered to flush now, so that an event of another
// kind published next follows it.
func (c *coalescer) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

// Close flushes what is buffered and stops the timer; no flush runs after it.
func (c *coalescer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	err := c.flushLocked()
	if c.err == nil {
		c.err = errClosed
	}
	return err
}

// Abandon stops the timer without flushing.
func (c *coalescer) Abandon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.err == nil {
		c.err = errClosed
	}
}

var errClosed = errClosedT{}

type errClosedT struct{}

func (errClosedT) Error() string { return "coalescer closed" }
