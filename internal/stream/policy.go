// Package stream is the policy every streaming transport (the WebSocket
// dialects, SSE) applies to its connections, so that each way in behaves the
// same: which browser origins may open one, who the caller is, how many
// connections the node, a principal and the not yet authenticated may hold,
// that a stream ends when its token does, and how a subscription's events
// queue for a connection without ever blocking the hub.
package stream

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/ratelimit"
)

// Authenticator turns presented credentials into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error)
}

// ConnLimiter caps connections per node and per principal, and those not yet
// authenticated per node and per address (ratelimit.Conns).
type ConnLimiter interface {
	Open() bool
	Full() bool
	Close()
	Admit(principal string) bool
	Release(principal string)
	OpenPending(addr string) bool
	ClosePending(addr string)
}

// Config is the policy's settings.
type Config struct {
	// Conns caps the connections of every streaming transport together;
	// nil leaves them uncapped.
	Conns ConnLimiter
	// AllowedOrigins lists browser origins besides the server's own that may
	// use the API; "*" allows any.
	AllowedOrigins []string
	// TokenGrace is how long a stream outlives its token's expiry.
	TokenGrace time.Duration
	// Proxies may say which client they forward for; a public key's caps
	// count per client address.
	Proxies auth.Proxies
	// Refusals logs refused origins, credentials and connections; nil logs
	// them through the policy's logger.
	Refusals *ratelimit.Refusals
}

// Policy is the one streaming-transport policy of a node.
type Policy struct {
	cfg  Config
	auth Authenticator
}

// NewPolicy returns the policy; a authenticates every caller.
func NewPolicy(cfg Config, a Authenticator, log *slog.Logger) *Policy {
	if cfg.Conns == nil {
		cfg.Conns = ratelimit.NewConns(0, 0)
	}
	if cfg.Refusals == nil {
		cfg.Refusals = ratelimit.NewRefusals(log)
	}
	return &Policy{cfg: cfg, auth: a}
}

// Refusals is the log of refused requests the policy writes to.
func (p *Policy) Refusals() *ratelimit.Refusals { return p.cfg.Refusals }

// ClientAddr is the address of the client behind r, through trusted proxies.
func (p *Policy) ClientAddr(r *http.Request) netip.Addr { return p.cfg.Proxies.ClientAddr(r) }

// Authenticate finds the principal behind credentials presented from addr
// (a page on origin, if a browser's); a refusal is logged with what decides
// which credentials are accepted, never with the secret.
func (p *Policy) Authenticate(ctx context.Context, creds auth.Credentials, addr netip.Addr, origin string) (*auth.Principal, error) {
	pr, err := p.auth.Authenticate(ctx, creds)
	if err != nil {
		p.cfg.Refusals.Credentials(ctx, addr, origin, err, ratelimit.FixCredentials)
		return nil, err
	}
	return pr, nil
}

// Open reports whether the server accepts callers without credentials
// (development mode without keys).
func (p *Policy) Open() bool {
	o, ok := p.auth.(interface{ Open() bool })
	return ok && o.Open()
}

// Expire calls end when pr's token expires, after the grace: a stream lasts
// no longer than the credentials it was opened with. The timer is nil when
// the token does not expire; stop it when the stream ends first.
func (p *Policy) Expire(pr *auth.Principal, end func()) *time.Timer {
	if pr == nil || pr.Expires.IsZero() {
		return nil
	}
	return time.AfterFunc(time.Until(pr.Expires)+p.cfg.TokenGrace, end)
}
