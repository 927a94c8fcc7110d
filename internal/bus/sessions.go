// Session owners.
//
// KV bucket TC_SESSIONS, one key per session: its owner (a principal), kept
// twice --session-ttl from the owner's last use. Reads fail closed.

package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const sessionBucket = "TC_SESSIONS"

// SessionOwner returns the owner of a session; found is false for a
// session nobody owns (new, or expired). A store error is an error, never
// "not found": ownership fails closed. When the owner is the one asking
// (user), the session counts as used.
func (b *Bus) SessionOwner(ctx context.Context, session, user string) (owner string, found bool, err error) {
	e, err := b.sessions.Get(ctx, session)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("owner of session %s: %w", session, err)
	}
	// The record lives for twice the session TTL from its last write; one
	// in use is written again once it is half a TTL old, so it outlives the
	// turns (kept one TTL) of a session in use.
	if b.cfg.SessionTTL > 0 && string(e.Value()) == user && time.Since(e.Created()) > b.cfg.SessionTTL/2 {
		if _, err := b.sessions.Update(ctx, session, e.Value(), e.Revision()); err != nil && !isWrongRevision(err) {
			b.log.Warn("refresh session owner", "session", session, "err", err)
		}
	}
	return string(e.Value()), true, nil
}

// ClaimSession binds a session to owner if it has no owner yet, and returns
// the session's owner either way. The bind is atomic across nodes.
func (b *Bus) ClaimSession(ctx context.Context, session, owner string) (string, error) {
	_, err := b.sessions.Create(ctx, session, []byte(owner))
	if err == nil {
		return owner, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("claim session %s: %w", session, err)
	}
	e, err := b.sessions.Get(ctx, session)
	if err != nil {
		return "", fmt.Errorf("owner of session %s: %w", session, err)
	}
	return string(e.Value()), nil
}

// setupSessions creates the session owners' bucket.
func (b *Bus) setupSessions(ctx context.Context) (err error) {
	b.sessions, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   sessionBucket,
		TTL:      2 * b.cfg.SessionTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", sessionBucket, err)
	}
	return nil
}
