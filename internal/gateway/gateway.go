// Package gateway is the HTTP face of tokencast: GraphQL over POST, SSE and
// WebSocket on /graphql, health, the chat UI and the about page.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/ratelimit"
)

// Operations is how the gateway runs GraphQL: ServeHTTP answers a JSON
// POST, Prepare and Execute serve SSE, on one executor.
type Operations interface {
	http.Handler
	Prepare(ctx context.Context, params *graphql.RawParams) (*graph.Operation, gqlerror.List)
	Execute(ctx context.Context, op *graph.Operation) *graphql.Response
}

// Hub is the node's fan-out, as SSE uses it.
type Hub interface {
	Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error)
}

// Authenticator turns presented credentials into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error)
}

// Readiness reports whether a part can serve; nil means ready.
type Readiness func(ctx context.Context) error

// SignatureVerifier checks SigV4-signed requests.
type SignatureVerifier interface {
	Verify(ctx context.Context, r *http.Request, body []byte) (*auth.Principal, error)
}

// Config bounds the HTTP side.
type Config struct {
	MaxBodyBytes int64
	QueueSize    int
	// MaxResultBytes bounds a query result sent over SSE (default 5 MiB).
	MaxResultBytes int
	WriteTimeout   time.Duration
	// AllowedOrigins may call the API from a browser page (CORS); "*" is any.
	AllowedOrigins []string
	// SigV4 verifies requests signed with AWS SigV4; nil refuses them.
	SigV4 SignatureVerifier
	// UI is the built chat page served at /; nil serves none.
	UI fs.FS
	// Metrics serves /metrics; nil serves none.
	Metrics http.Handler
	// OnSSE is called with +1 when an SSE stream opens and -1 when it ends.
	OnSSE func(delta int)
	// Conns caps SSE subscriptions with the WebSocket connections, per node
	// and per principal; nil leaves them uncapped.
	Conns ConnLimiter
	// TokenGrace is how long an SSE subscription outlives its token.
	TokenGrace time.Duration
	// Proxies may say which client they forward for; a public key's limits
	// count per client address.
	Proxies auth.Proxies
	// LoopbackHostsOnly (development mode) refuses a Host header that is
	// not localhost, a loopback address or one of AllowedHosts.
	LoopbackHostsOnly bool
	AllowedHosts      []string
	// Refusals logs refused origins, credentials and connections; nil
	// logs them through the gateway's logger.
	Refusals *ratelimit.Refusals
}

// ConnLimiter caps streaming connections per node and per principal.
type ConnLimiter interface {
	Open() bool
	Close()
	Admit(principal string) bool
	Release(principal string)
}

// Gateway serves HTTP.
type Gateway struct {
	cfg     Config
	ops     Operations
	hub     Hub
	auth    Authenticator
	ws      http.Handler
	ui      fs.FS
	ready   map[string]Readiness
	log     *slog.Logger
	version string
	closing chan struct{} // closed at shutdown: streaming responses end
	once    sync.Once
}

// Shutdown ends every SSE stream so clients reconnect elsewhere.
func (g *Gateway) Shutdown() { g.once.Do(func() { close(g.closing) }) }

// New returns a gateway. ws serves WebSocket upgrades on /graphql.
func New(cfg Config, ops Operations, h Hub, a Authenticator, ws http.Handler, ready map[string]Readiness, version string, log *slog.Logger) *Gateway {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = 5 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Refusals == nil {
		cfg.Refusals = ratelimit.NewRefusals(log)
	}
	return &Gateway{cfg: cfg, ops: ops, hub: h, auth: a, ws: ws, ready: ready, log: log, version: version, closing: make(chan struct{}), ui: cfg.UI}
}

// serveGraphQL dispatches /graphql by what the request asks for.
func (g *Gateway) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		g.ws.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeErrors(w, http.StatusMethodNotAllowed, gqlerror.List{{Message: "use POST with a JSON body, or a WebSocket", Extensions: map[string]any{"code": chat.CodeBadInput}}})
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeErrors(w, http.StatusUnsupportedMediaType, gqlerror.List{{Message: "Content-Type must be application/json", Extensions: map[string]any{"code": chat.CodeBadInput}}})
		return
	}
	// Read the whole (bounded) body first, so an oversized one gets a clear
	// 413 rather than a decoding error, and SigV4 can hash it.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		writeErrors(w, http.StatusRequestEntityTooLarge, gqlerror.List{{Message: "the request body is larger than the server accepts", Extensions: map[string]any{"code": "BODY_TOO_LARGE"}}})
		return
	}
	// One JSON object: a batch (an array) or broken JSON gets a fixed
	// message and code, never the body echoed back.
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(body) {
		writeErrors(w, http.StatusBadRequest, gqlerror.List{{Message: "the body must be one JSON object: {\"query\": …}; batches are not accepted", Extensions: map[string]any{"code": chat.CodeBadInput}}})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	addr := g.cfg.Proxies.ClientAddr(r)
	p, ok := g.authenticate(w, r, body, addr)
	if !ok {
		return
	}
	r = r.WithContext(auth.WithClientAddr(auth.WithPrincipal(r.Context(), p), addr))
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		g.serveSSE(w, r)
		return
	}
	g.ops.ServeHTTP(w, r)
}

// authenticate finds the caller of a GraphQL request: a SigV4 signature
// (service appsync), a bearer token or an x-api-key. It has answered when ok is false.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, body []byte, addr netip.Addr) (p *auth.Principal, ok bool) {
	refuse := func(msg string, err error, fix string) (*auth.Principal, bool) {
		g.cfg.Refusals.Credentials(r.Context(), addr, r.Header.Get("Origin"), err, fix)
		writeErrors(w, http.StatusUnauthorized, gqlerror.List{{Message: msg, Extensions: map[string]any{"code": chat.CodeUnauthenticated}}})
		return nil, false
	}
	if auth.IsSigV4(r) {
		if g.cfg.SigV4 == nil {
			return refuse("SigV4 signatures are not accepted here: no access keys are configured", errors.New("a SigV4 signature"), "TOKENCAST_SIGV4_KEYS")
		}
		p, err := g.cfg.SigV4.Verify(r.Context(), r, body)
		if err != nil {
			return refuse("the request signature does not verify", err, "TOKENCAST_SIGV4_KEYS")
		}
		return p, true
	}
	p, err := g.auth.Authenticate(r.Context(), auth.Credentials{APIKey: r.Header.Get("X-Api-Key"), Authorization: r.Header.Get("Authorization")})
	if err != nil {
		return refuse("a valid API key or token is required", err, ratelimit.FixCredentials)
	}
	return p, true
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"alive"}` + "\n"))
}

// readyz checks every part; 503 names what is not ready.
func readyz(ready map[string]Readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		serveReady(w, r, ready)
	}
}

func serveReady(w http.ResponseWriter, r *http.Request, ready map[string]Readiness) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := http.StatusOK
	checks := make(map[string]string, len(ready))
	for name, check := range ready {
		if err := check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			checks[name] = err.Error()
			continue
		}
		checks[name] = "ok"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": status == http.StatusOK, "checks": checks})
}
