package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrForbidden says the principal may not touch the session.
var ErrForbidden = errors.New("this session belongs to someone else")

// OwnerStore binds sessions to owners.
type OwnerStore interface {
	// SessionOwner returns a session's owner; found is false when it has
	// none. An error means the owner could not be read: never access. A
	// look-up by the owner (user) counts as a use of the session.
	SessionOwner(ctx context.Context, session, user string) (owner string, found bool, err error)
	ClaimSession(ctx context.Context, session, owner string) (string, error)
	// ConversationOwner reports whether a session has stored turns, and
	// the owner its questions record ("" for none).
	ConversationOwner(ctx context.Context, session string) (owner string, has bool, err error)
}

// ErrOwnerLost says a session has a conversation but no owner record: the
// ownership store lost it (a damaged file, a restore from an older copy).
// Nobody may claim such a session; an operator must look.
var ErrOwnerLost = errors.New("the session has a conversation but no owner record: the ownership store may be damaged")

// ClaimLimiter bounds how often a principal may claim new sessions.
type ClaimLimiter interface {
	Allow(key string) (ok bool, retryAfter time.Duration)
}

// Guard decides who may touch a session: the first principal to ask in it or
// subscribe to it owns it; services may touch any. Knowing a session id
// grants nothing.
type Guard struct {
	store  OwnerStore
	claims ClaimLimiter
	log    *slog.Logger
}

// NewGuard returns a guard over store; claims (may be nil) bounds how often
// one principal (or, for a public key, one address) may claim a new session,
// so a flood of session ids cannot fill the store.
func NewGuard(store OwnerStore, claims ClaimLimiter, log *slog.Logger) *Guard {
	return &Guard{store: store, claims: claims, log: log}
}

// Authorize claims the session for p if it is free, and refuses p if another
// principal owns it. It fails closed: an owner that cannot be read is an
// error, never a free session.
func (g *Guard) Authorize(ctx context.Context, p *Principal, session string) error {
	if p == nil {
		return ErrUnauthenticated
	}
	if p.IsService() {
		return nil
	}
	owner, found, err := g.store.SessionOwner(ctx, session, p.ID)
	if err != nil {
		return fmt.Errorf("authorize session: %w", err)
	}
	if !found {
		// Turns expire before their owner record (see bus.Config.SessionTTL),
		// so turns without an owner record mean the store lost it: a
		// crash before it was written, or damage. The questions record who
		// asked them; the owner is restored from them. Without that, fail
		// closed: never a free session.
		recorded, has, err := g.store.ConversationOwner(ctx, session)
		if err != nil {
			return fmt.Errorf("authorize session %s: %w", session, err)
		}
		if has && recorded == "" {
			g.log.Error("refused a session whose owner is missing", "session", session, "principal", p.ID, "err", ErrOwnerLost)
			return fmt.Errorf("authorize session %s: %w", session, ErrOwnerLost)
		}
		if has {
			if owner, err = g.store.ClaimSession(ctx, session, recorded); err != nil {
				return fmt.Errorf("authorize session: %w", err)
			}
			g.log.Warn("restored a session's lost owner record from its conversation", "session", session)
			if owner != p.ID {
				return ErrForbidden
			}
			return nil
		}
		if g.claims != nil {
			if ok, wait := g.claims.Allow(p.LimitKey(ClientAddrFrom(ctx))); !ok {
				return &RateLimitedError{RetryAfter: wait}
			}
		}
		if owner, err = g.store.ClaimSession(ctx, session, p.ID); err != nil {
			return fmt.Errorf("authorize session: %w", err)
		}
	}
	if owner != p.ID {
		return ErrForbidden
	}
	return nil
}

// RateLimitedError refuses a new session over the principal's rate.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return "too many new sessions" }
