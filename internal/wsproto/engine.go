// Package wsproto is the WebSocket connection engine and its dialects: the
// GraphQL ones and AppSync Events (whose channels and publishing are package
// events').
// Every connection is bounded: a reader goroutine for its life, a writer
// started only while frames wait (with a write deadline), a queue bounded in
// frames and bytes, a read limit, an init timeout and a cap on operations;
// a query runs on a goroutine of its own while it lasts. A subscriber that
// cannot keep up is closed, never waited for.
package wsproto

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/events"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

// Subprotocol names.
const (
	// SubprotocolTransportWS is graphql-transport-ws (graphql-ws, Apollo
	// GraphQLWsLink, urql).
	SubprotocolTransportWS = "graphql-transport-ws"
	// SubprotocolGraphQLWS is graphql-ws: the AppSync real-time dialect, or
	// the legacy Apollo subscriptions-transport-ws.
	SubprotocolGraphQLWS = "graphql-ws"
)

// Close codes beyond the dialects' own.
const (
	// CloseSlow closes a subscriber whose outgoing queue overflowed; it
	// should reconnect and resume from its last cursor.
	CloseSlow = 1013
	// CloseRestart is sent when the server shuts down: reconnect (to another
	// node) and resume from the last cursor.
	CloseRestart = websocket.CloseServiceRestart
	// CloseInternalError ends a connection whose message met a bug
	// (graphql-transport-ws's 4500, used for every dialect).
	CloseInternalError = 4500
)

// Executor is what the engine needs from the GraphQL layer.
type Executor interface {
	Prepare(ctx context.Context, params *graphql.RawParams) (*graph.Operation, gqlerror.List)
	Execute(ctx context.Context, op *graph.Operation) *graphql.Response
}

// Hub is what the engine needs from the node's fan-out.
type Hub interface {
	Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error)
}

// Config bounds every connection.
type Config struct {
	ReadLimit    int64
	WriteTimeout time.Duration
	QueueSize    int
	// QueueBytes bounds a connection's queue in bytes as QueueSize does in
	// frames: a client that stops reading holds at most this much.
	QueueBytes int
	// MaxResultBytes bounds one query result sent on a connection.
	MaxResultBytes   int
	InitTimeout      time.Duration
	MaxSubscriptions int
	// MaxPayload bounds an AppSync start payload and event (AppSync: 240 KB).
	MaxPayload int
	// KeepAlive is how often graphql-ws connections get a "ka".
	KeepAlive time.Duration
	// Publish publishes AppSync Events into sessions (graph.Resolver); nil
	// refuses publishes.
	Publish events.Sender
	// SigV4 verifies AppSync Events auth objects signed with SigV4; nil
	// refuses them.
	SigV4 SignatureVerifier
	// ConnectionTimeout is announced to AppSync clients as
	// connectionTimeoutMs: how long they wait for a "ka" before reconnecting.
	ConnectionTimeout time.Duration
	// OnSlow is called when a connection is closed as a slow consumer.
	OnSlow func()
	// OnConn is called with +1 when a connection opens and -1 when it
	// closes, with its subprotocol.
	OnConn func(protocol string, delta int)
}

// Server accepts WebSocket connections.
type Server struct {
	cfg      Config
	policy   *stream.Policy
	ops      Executor
	hub      Hub
	log      *slog.Logger
	upgrader websocket.Upgrader
	// connectionAck is the AppSync connection_ack, made once.
	connectionAck []byte

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// NewServer returns the engine. Its connections are held to policy, which
// SSE shares: origins, credentials, caps and token expiry.
func NewServer(cfg Config, policy *stream.Policy, ops Executor, h Hub, log *slog.Logger) *Server {
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 256 << 10
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 1 << 20
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = 5 << 20
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = 3 * time.Second
	}
	if cfg.MaxSubscriptions <= 0 {
		cfg.MaxSubscriptions = 100
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 240 << 10
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 20 * time.Second
	}
	if cfg.ConnectionTimeout <= 0 {
		cfg.ConnectionTimeout = 5 * time.Minute
	}
	s := &Server{cfg: cfg, policy: policy, ops: ops, hub: h, log: log, conns: make(map[*conn]struct{}),
		connectionAck: connectionAck(cfg.ConnectionTimeout.Milliseconds())}
	s.upgrader = websocket.Upgrader{
		// An idle connection keeps only its 256-byte read buffer (a frame
		// header fits; a message is read past it). Write buffers come from
		// a pool for the length of a write, so they can be large enough
		// for a token frame to go out unfragmented.
		ReadBufferSize:  256,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		// The client's order decides; a header-… entry (AppSync auth) is
		// never echoed.
		Subprotocols: []string{SubprotocolTransportWS, SubprotocolGraphQLWS, SubprotocolEvents},
		CheckOrigin: func(r *http.Request) bool {
			return policy.CheckOrigin(r, "WebSocket upgrade")
		},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, http.StatusText(status), status)
		},
	}
	return s
}

// ServeHTTP upgrades the request and runs the connection until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	// A slot is taken only when the connection authenticates; until then it
	// holds a pending one.
	lease, err := s.policy.Pending(r.Context(), s.policy.ClientAddr(r), r.Header.Get("Origin"))
	if err != nil {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable) // ErrNodeFull, ErrPendingFull
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		lease.Release()
		s.wg.Done()
		return // the upgrader has answered
	}
	c := newConn(s, ws, r, lease)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	// The connection runs on its own goroutine and the handler returns:
	// net/http's goroutine, its deep stack and its buffers are freed, so an
	// idle connection costs only what it needs.
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		if on := s.cfg.OnConn; on != nil {
			proto := ws.Subprotocol()
			if proto == SubprotocolEvents {
				proto = "events"
			}
			on(proto, 1)
			defer on(proto, -1)
		}
		c.run()
	}()
}

// Shutdown closes every connection with the restart code and waits for them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for c := range s.conns {
		c.close(CloseRestart, "server shutting down: reconnect and resume")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conns reports the open connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
