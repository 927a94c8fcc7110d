package ratelimit

import "sync"

// Conns caps the streaming connections of one node, in all and per
// principal, across every transport (WebSocket dialects and SSE alike).
type Conns struct {
	maxNode, maxPer int // 0: no cap

	mu   sync.Mutex
	node int
	per  map[string]int
}

// NewConns returns caps of maxNode connections and maxPer per principal;
// 0 leaves either uncapped.
func NewConns(maxNode, maxPer int) *Conns {
	return &Conns{maxNode: maxNode, maxPer: maxPer, per: make(map[string]int)}
}

// Open takes a node slot; false when the node is full. Close gives it back.
func (c *Conns) Open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxNode > 0 && c.node >= c.maxNode {
		return false
	}
	c.node++
	return true
}

// Close gives back a slot taken by Open.
func (c *Conns) Close() {
	c.mu.Lock()
	c.node--
	c.mu.Unlock()
}

// Admit counts a connection against principal id's cap; false when it is
// reached. Release gives it back.
func (c *Conns) Admit(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxPer > 0 && c.per[id] >= c.maxPer {
		return false
	}
	c.per[id]++
	return true
}

// Release gives back a connection counted by Admit.
func (c *Conns) Release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per[id]--; c.per[id] <= 0 {
		delete(c.per, id)
	}
}
