// Package sse serves GraphQL over Server-Sent Events in distinct connections
// mode (enisdenjo/graphql-sse): a query or mutation answers with one "next"
// event and "complete"; a subscription streams until the client closes the
// connection. A stream is held to the same stream.Policy as a WebSocket:
// the caps, the end at its token's expiry, the hub sink.
package sse

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

// Executor is what SSE needs from the GraphQL layer.
type Executor interface {
	Prepare(ctx context.Context, params *graphql.RawParams) (*graph.Operation, gqlerror.List)
	Execute(ctx context.Context, op *graph.Operation) *graphql.Response
}

// Hub is the node's fan-out, as SSE uses it.
type Hub interface {
	Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error)
}

// Config bounds every stream.
type Config struct {
	// QueueSize bounds the events a stream holds for its client.
	QueueSize int
	// MaxResultBytes bounds a query result (default 5 MiB).
	MaxResultBytes int
	// WriteTimeout bounds a write to the client, and how long history
	// waits for room in the queue.
	WriteTimeout time.Duration
	// OnStream is called with +1 when a subscription's stream opens and -1
	// when it ends.
	OnStream func(delta int)
}

// keepAlive is how often an idle stream gets a comment, so proxies keep it.
const keepAlive = 15 * time.Second

// Server answers GraphQL-over-SSE requests.
type Server struct {
	cfg     Config
	policy  *stream.Policy
	ops     Executor
	hub     Hub
	log     *slog.Logger
	closing chan struct{} // closed at shutdown: every stream ends
	once    sync.Once
}

// NewServer returns the SSE transport, its streams held to policy.
func NewServer(cfg Config, policy *stream.Policy, ops Executor, h Hub, log *slog.Logger) *Server {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = 5 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	return &Server{cfg: cfg, policy: policy, ops: ops, hub: h, log: log, closing: make(chan struct{})}
}

// Shutdown ends every stream so clients reconnect elsewhere.
func (s *Server) Shutdown() { s.once.Do(func() { close(s.closing) }) }

// ServeHTTP answers a GraphQL request that accepts an event stream. The
// request is a JSON POST whose caller is authenticated: its context holds
// the principal and the client's address.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var params graphql.RawParams
	if err := json.NewDecoder(r.Body).Decode(&params); err != nil || params.Query == "" {
		graph.WriteErrors(w, http.StatusBadRequest, graph.Refusal(chat.CodeBadInput, "the body must be a JSON GraphQL request"))
		return
	}
	op, errs := s.ops.Prepare(r.Context(), &params)
	if len(errs) > 0 {
		graph.WriteErrors(w, http.StatusBadRequest, errs)
		return
	}
	p := auth.FromContext(r.Context())
	if op.Subscription != nil {
		// A subscription is a connection like a WebSocket: the same caps.
		lease := s.policy.Lease(auth.ClientAddrFrom(r.Context()), r.Header.Get("Origin"))
		if err := lease.Admit(r.Context(), p); err != nil {
			refuse(w, err)
			return
		}
		defer lease.Release()
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if op.Subscription == nil {
		s.answer(r.Context(), w, rc, op)
		return
	}
	_ = rc.Flush()
	if s.cfg.OnStream != nil {
		s.cfg.OnStream(1)
		defer s.cfg.OnStream(-1)
	}
	s.subscribe(r.Context(), w, rc, p, op.Subscription)
}

// refuse answers a subscription over a cap.
func refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, stream.ErrNodeFull) {
		w.Header().Set("Retry-After", "5")
		graph.WriteErrors(w, http.StatusServiceUnavailable, graph.Refusal(chat.CodeUnavailable, "too many connections on this node"))
		return
	}
	graph.WriteErrors(w, http.StatusTooManyRequests, graph.Refusal(chat.CodeTooManyConnections, "too many connections for this principal"))
}

// answer sends a query's or mutation's result and completes.
func (s *Server) answer(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, op *graph.Operation) {
	data, err := json.Marshal(s.ops.Execute(ctx, op))
	if err != nil {
		return
	}
	if len(data) > s.cfg.MaxResultBytes {
		data, _ = json.Marshal(map[string]any{"errors": graph.Refusal(chat.CodeResultTooLarge, "the result is larger than the server sends at once")})
	}
	_, _ = w.Write(event("next", data))
	_, _ = w.Write(complete)
	_ = rc.Flush()
}

// subscribe streams a subscription's events until the client leaves, its
// token expires, it falls too far behind, or the server shuts down.
func (s *Server) subscribe(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, p *auth.Principal, sub *graph.Subscription) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The handler is the writer: the outbox wakes it when events wait.
	wake := make(chan struct{}, 1)
	slow := make(chan struct{})
	var once sync.Once
	q := &stream.Queue{
		Out: stream.NewOutbox(s.cfg.QueueSize, 0, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}),
		Closing:       slow,
		Slow:          func() { once.Do(func() { close(slow) }) },
		ReplayTimeout: s.cfg.WriteTimeout,
	}
	shape := sub.Shape
	sink := stream.Sink{Queue: q, Frame: func(sh *hub.Shared) []byte {
		data := sh.Encoded(shape, shape.Encode)
		if data == nil {
			return nil // an event this subscriber did not ask for
		}
		return nextData(data)
	}}

	// Subscribing replays history into the queue this loop drains, so it
	// runs beside the loop; the handler waits for it before returning.
	type attached struct {
		sub *hub.Subscriber
		err error
	}
	attach := make(chan attached, 1)
	go func() {
		hs, err := s.hub.Subscribe(ctx, sub.SessionID, sub.After, sink)
		attach <- attached{hs, err}
	}()
	defer func() {
		cancel()
		if a := <-attach; a.sub != nil {
			a.sub.Close()
		}
	}()
	waiting := attach
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	// The stream ends when its token does, as a WebSocket does with 4401.
	expired := make(chan struct{})
	if t := s.policy.Expire(p, func() { close(expired) }); t != nil {
		defer t.Stop()
	}
	for {
		select {
		case <-expired:
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			s.fail(w, graph.Refusal(chat.CodeUnauthenticated, "the token expired: authenticate again"))
			_ = rc.Flush()
			return
		case a := <-waiting:
			attach <- a // for the deferred close
			if a.err != nil {
				if !errors.Is(a.err, context.Canceled) {
					s.log.Error("sse subscribe", "session", sub.SessionID, "err", a.err)
				}
				s.fail(w, graph.Refusal(chat.CodeUnavailable, "could not subscribe, try again"))
				return
			}
			waiting = nil // attached; stop selecting on it
		case <-ctx.Done():
			return
		case <-s.closing:
			return // shutting down: the client reconnects and resumes
		case <-slow:
			return // too slow: the client reconnects and resumes
		case <-wake:
			if !s.drain(w, rc, q.Out) {
				return
			}
		case <-tick.C:
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := w.Write([]byte(":\n\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// drain writes what is queued, one flush a batch; false when the client is
// gone.
func (s *Server) drain(w http.ResponseWriter, rc *http.ResponseController, out *stream.Outbox) bool {
	for {
		batch, _ := out.Next()
		if batch == nil {
			return true
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		for _, frame := range batch {
			if _, err := w.Write(frame); err != nil {
				return false
			}
		}
		if err := rc.Flush(); err != nil {
			return false
		}
	}
}

// fail ends a stream with errors.
func (s *Server) fail(w http.ResponseWriter, errs gqlerror.List) {
	payload, _ := json.Marshal(map[string]any{"errors": errs})
	_, _ = w.Write(event("next", payload))
	_, _ = w.Write(complete)
}

var complete = []byte("event: complete\ndata: \n\n")

func event(name string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(name)+16)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// nextData is a "next" event carrying a subscription's data object.
func nextData(data []byte) []byte {
	b := make([]byte, 0, len(data)+32)
	b = append(b, "event: next\ndata: {\"data\":"...)
	b = append(b, data...)
	return append(b, "}\n\n"...)
}
