package ratelimit

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Refusals logs the requests the server refuses (a foreign origin, a wrong
// key, an ask over its rate, a connection over a cap) at warn, so an operator
// sees why a client fails, while a client that repeats a refused request
// cannot flood the log: each source gets at most one line a period, and that
// line counts the refusals since the previous one.
type Refusals struct {
	log    *slog.Logger
	period time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	sources map[string]*refused
}

type refused struct {
	logged time.Time // when this source's last line was written
	count  int       // refusals since then, not yet in a line
}

// NewRefusals returns a log of refusals, one line per source per minute.
func NewRefusals(log *slog.Logger) *Refusals {
	return &Refusals{log: log, period: time.Minute, max: 10000, now: time.Now, sources: make(map[string]*refused)}
}

// overflow is the source every refusal counts against while the table of
// sources is full of sources seen within the period.
const overflow = "(other sources)"

// Warn records a refusal from source (what repeats it: a kind of refusal and
// an address) and logs msg with attrs unless this source had its line less
// than a period ago. The line's "refused" is the number of refusals it stands
// for.
func (r *Refusals) Warn(ctx context.Context, source, msg string, attrs ...any) {
	if r == nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	s := r.sources[source]
	if s == nil {
		if len(r.sources) >= r.max {
			r.sweep(now)
		}
		if len(r.sources) >= r.max {
			source = overflow
			s = r.sources[source]
		}
		if s == nil {
			s = &refused{}
			r.sources[source] = s
		}
	}
	s.count++
	if !s.logged.IsZero() && now.Sub(s.logged) < r.period {
		r.mu.Unlock()
		return
	}
	count := s.count
	s.logged, s.count = now, 0
	r.mu.Unlock()
	r.log.WarnContext(ctx, msg, append(attrs, "refused", count)...)
}

// sweep forgets sources whose last line is a period old or older: a
// refusal from them logs at once again. Their uncounted refusals are lost
// to the log, not to the client.
func (r *Refusals) sweep(now time.Time) {
	for k, s := range r.sources {
		if now.Sub(s.logged) >= r.period {
			delete(r.sources, k)
		}
	}
}

// FixCredentials names what decides which keys and tokens are accepted.
const FixCredentials = "TOKENCAST_API_KEYS, TOKENCAST_PUBLIC_KEYS, TOKENCAST_SERVICE_KEYS or --oidc-issuer"

// Origin logs a browser origin refused on the way named by on (a CORS
// preflight, a WebSocket upgrade).
func (r *Refusals) Origin(ctx context.Context, addr netip.Addr, origin, on string) {
	r.Warn(ctx, "origin "+addr.String(), "refused a browser origin",
		"origin", origin, "addr", addr.String(), "on", on, "fix", "--allowed-origins")
}

// Credentials logs refused credentials: why (never the secret), from where,
// and fix, what decides which are accepted.
func (r *Refusals) Credentials(ctx context.Context, addr netip.Addr, origin string, err error, fix string) {
	r.Warn(ctx, "credentials "+addr.String(), "refused credentials",
		"addr", addr.String(), "origin", origin, "err", err, "fix", fix)
}

// Connection logs a streaming connection refused over the cap named by fix
// (--max-conns, --max-conns-per-principal).
func (r *Refusals) Connection(ctx context.Context, addr netip.Addr, principal, origin, fix string) {
	r.Warn(ctx, "connection "+addr.String(), "refused a connection over its cap",
		"principal", principal, "addr", addr.String(), "origin", origin, "fix", fix)
}

// Ask logs a question refused over its principal's rate; limitKey is what
// the rate counts (the principal, or a public key's principal at an
// address).
func (r *Refusals) Ask(ctx context.Context, addr netip.Addr, principal, limitKey string, retryAfter time.Duration) {
	r.Warn(ctx, "ask "+limitKey, "refused a question over the ask rate",
		"principal", principal, "addr", addr.String(), "retry_after", retryAfter.Round(time.Millisecond), "fix", "--ask-rate, --ask-burst")
}

// Host logs a request refused for its Host header (development mode answers
// only to loopback names).
func (r *Refusals) Host(ctx context.Context, addr netip.Addr, host string) {
	r.Warn(ctx, "host "+addr.String(), "refused a Host header",
		"host", host, "addr", addr.String(), "fix", "--allowed-hosts")
}
