package stream

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"github.com/tokencast/tokencast/internal/auth"
)

// Why a connection was refused a slot; each transport says it in its own
// words (an HTTP status, a close code, an AppSync error).
var (
	// ErrNodeFull: the node holds as many connections as it may.
	ErrNodeFull = errors.New("too many connections on this node")
	// ErrPendingFull: the node, or the client's address, holds as many
	// connections waiting to authenticate as it may.
	ErrPendingFull = errors.New("too many connections waiting to authenticate")
	// ErrPrincipalFull: the principal holds as many connections as it may.
	ErrPrincipalFull = errors.New("too many connections for this principal")
)

// A Lease is the slots one connection holds against the caps: a pending slot
// until it authenticates, then a node slot and one of its principal's. The
// zero Lease holds nothing; Release gives back whatever it holds.
type Lease struct {
	p      *Policy
	addr   netip.Addr
	origin string

	mu      sync.Mutex
	pending bool   // a pending slot (not authenticated yet)
	node    bool   // a node slot
	key     string // what the principal's cap counts, when counted
	counted bool   // key is counted against its principal's cap
}

// Pending leases a pending slot to a connection from addr (a page on origin,
// if a browser's) that will authenticate in its own protocol: a full node
// says so at once, and sockets that never authenticate, held to a budget of
// their own per address, starve no user. It fails with ErrNodeFull or
// ErrPendingFull.
func (p *Policy) Pending(ctx context.Context, addr netip.Addr, origin string) (*Lease, error) {
	if p.cfg.Conns.Full() {
		p.cfg.Refusals.Connection(ctx, addr, "", origin, "--max-conns")
		return nil, ErrNodeFull
	}
	if !p.cfg.Conns.OpenPending(addr.String()) {
		p.cfg.Refusals.Connection(ctx, addr, "", origin, "--max-pending-conns, --max-pending-conns-per-addr")
		return nil, ErrPendingFull
	}
	return &Lease{p: p, addr: addr, origin: origin, pending: true}, nil
}

// Lease is an empty lease for a connection from addr whose caller is already
// authenticated (SSE): Admit takes its slots.
func (p *Policy) Lease(addr netip.Addr, origin string) *Lease {
	return &Lease{p: p, addr: addr, origin: origin}
}

// Admit counts the connection for its principal pr: a node slot, unless it
// holds one, and one of pr's (a public key's counts per client address). A
// connection holds one slot whatever it sends: authenticating again keeps
// the slot it holds, or gives it back for one of the new principal. Its
// pending slot, if any, is given back. It fails with ErrNodeFull or
// ErrPrincipalFull, holding what it held before. A nil pr takes a node slot
// only.
func (l *Lease) Admit(ctx context.Context, pr *auth.Principal) error {
	conns := l.p.cfg.Conns
	l.mu.Lock()
	defer l.mu.Unlock()
	var id string
	if pr != nil {
		id = pr.ID
	}
	if !l.node && !conns.Open() {
		l.p.cfg.Refusals.Connection(ctx, l.addr, id, l.origin, "--max-conns")
		return ErrNodeFull
	}
	if pr != nil {
		if key := pr.LimitKey(l.addr); !l.counted || l.key != key {
			if !conns.Admit(key) {
				if !l.node {
					conns.Close()
				}
				l.p.cfg.Refusals.Connection(ctx, l.addr, id, l.origin, "--max-conns-per-principal")
				return ErrPrincipalFull
			}
			if l.counted {
				conns.Release(l.key)
			}
			l.key, l.counted = key, true
		}
	}
	l.node = true
	if l.pending {
		l.pending = false
		conns.ClosePending(l.addr.String())
	}
	return nil
}

// Release gives back every slot the lease holds; it may be called more than
// once.
func (l *Lease) Release() {
	conns := l.p.cfg.Conns
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending {
		conns.ClosePending(l.addr.String())
	}
	if l.counted {
		conns.Release(l.key)
	}
	if l.node {
		conns.Close()
	}
	l.pending, l.node, l.counted = false, false, false
}
