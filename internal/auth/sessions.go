package auth

import (
	"context"
	"errors"
	"fmt"
)

// ErrForbidden says the principal may not touch the session.
var ErrForbidden = errors.New("this session belongs to someone else")

// OwnerStore binds sessions to owners.
type OwnerStore interface {
	ClaimSession(ctx context.Context, session, owner string) (string, error)
}

// Guard decides who may touch a session: the first principal to ask in it or
// subscribe to it owns it; services may touch any. Knowing a session id
// grants nothing.
type Guard struct {
	store OwnerStore
}

// NewGuard returns a guard over store.
func NewGuard(store OwnerStore) *Guard { return &Guard{store: store} }

// Authorize claims the session for p if it is free, and refuses p if another
// principal owns it.
func (g *Guard) Authorize(ctx context.Context, p *Principal, session string) error {
	if p == nil {
		return ErrUnauthenticated
	}
	if p.IsService() {
		return nil
	}
	owner, err := g.store.ClaimSession(ctx, session, p.ID)
	if err != nil {
		return fmt.Errorf("authorize session: %w", err)
	}
	if owner != p.ID {
		return ErrForbidden
	}
	return nil
}
