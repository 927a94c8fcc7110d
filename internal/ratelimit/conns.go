package ratelimit

import "sync"

// Conns caps the streaming connections of one node, in all and per
// principal, across every transport (WebSocket dialects and SSE alike).
//
// A connection not yet authenticated (a WebSocket before its
// connection_init) holds a pending slot instead: a smaller budget of its own,
// per client address, so sockets that never authenticate cannot take the
// slots of users who do.
type Conns struct {
	maxNode, maxPer int // 0: no cap
	// maxPending bounds unauthenticated connections on the node, and
	// maxPendingPer those of one address; 0: no cap.
	maxPending, maxPendingPer int

	mu         sync.Mutex
	node       int
	per        map[string]int
	pending    int
	pendingPer map[string]int
}

// NewConns returns caps of maxNode connections and maxPer per principal;
// 0 leaves either uncapped.
func NewConns(maxNode, maxPer int) *Conns {
	return &Conns{maxNode: maxNode, maxPer: maxPer, per: make(map[string]int), pendingPer: make(map[string]int)}
}

// WithPending sets the budget of unauthenticated connections: max on the
// node, maxPer from one address.
func (c *Conns) WithPending(max, maxPer int) *Conns {
	c.maxPending, c.maxPendingPer = max, maxPer
	return c
}

// OpenPending takes a slot for an unauthenticated connection from addr;
// false when the node's or the address's pending budget is spent.
// ClosePending gives it back.
func (c *Conns) OpenPending(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.maxPending > 0 && c.pending >= c.maxPending) || (c.maxPendingPer > 0 && c.pendingPer[addr] >= c.maxPendingPer) {
		return false
	}
	c.pending++
	c.pendingPer[addr]++
	return true
}

// ClosePending gives back a slot taken by OpenPending.
func (c *Conns) ClosePending(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending--
	if c.pendingPer[addr]--; c.pendingPer[addr] <= 0 {
		delete(c.pendingPer, addr)
	}
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

// Full reports whether the node has no slot left, without taking one.
func (c *Conns) Full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxNode > 0 && c.node >= c.maxNode
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
