// Package gateway is the HTTP face of tokencast: GraphQL over POST, SSE and
// WebSocket on /graphql, health, the chat UI and the about page. routes.go
// lists every route; the transports are parts it mounts.
package gateway

import (
	"context"
	"io/fs"
	"net/http"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/stream"
)

// Readiness reports whether a part can serve; nil means ready.
type Readiness func(ctx context.Context) error

// SignatureVerifier checks SigV4-signed requests.
type SignatureVerifier interface {
	Verify(ctx context.Context, r *http.Request, body []byte) (*auth.Principal, error)
}

// Config is the gateway's own settings.
type Config struct {
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// SigV4 verifies requests signed with AWS SigV4; nil refuses them.
	SigV4 SignatureVerifier
	// UI is the built chat page served at /; nil serves none.
	UI fs.FS
	// Metrics serves /metrics; nil serves none.
	Metrics http.Handler
	// LoopbackHostsOnly (development mode) refuses a Host header that is
	// not localhost, a loopback address or one of AllowedHosts.
	LoopbackHostsOnly bool
	AllowedHosts      []string
}

// Deps are the parts the gateway serves.
type Deps struct {
	// Policy is the streaming transports' policy: the gateway checks
	// origins (CORS) and credentials by it too, so one list and one
	// authenticator decide for every transport.
	Policy *stream.Policy
	// GraphQL answers a JSON POST with one result (graph.Operations).
	GraphQL http.Handler
	// WebSocket serves upgrades on /graphql (wsproto).
	WebSocket http.Handler
	// SSE answers a POST that accepts an event stream (sse).
	SSE http.Handler
	// AISDK serves the AI SDK's UI message stream endpoints (aisdk); nil
	// serves none.
	AISDK UIChat
	// AGUI runs AG-UI's RunAgentInput (agui); nil serves none.
	AGUI http.Handler
	// Events publishes AppSync Events over HTTP (events); nil serves none.
	// Their real-time WebSocket is a dialect of WebSocket.
	Events http.Handler
	// Ready are the checks of /readyz, by name.
	Ready map[string]Readiness
	// Version is shown on the about page.
	Version string
}

// UIChat is a UI toolkit's chat endpoints: ask and stream the answer,
// resume the answer in flight, stop it.
type UIChat interface {
	Chat(w http.ResponseWriter, r *http.Request)
	Resume(w http.ResponseWriter, r *http.Request)
	Stop(w http.ResponseWriter, r *http.Request)
}

// Gateway serves HTTP.
type Gateway struct {
	cfg Config
	d   Deps
}

// New returns a gateway.
func New(cfg Config, deps Deps) *Gateway {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	return &Gateway{cfg: cfg, d: deps}
}
