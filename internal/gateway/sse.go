package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
)

// serveSSE answers a GraphQL-over-SSE request in distinct connections mode
// (enisdenjo/graphql-sse): "next" events, then "complete" for queries and
// mutations; a subscription streams until the client closes the connection.
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	var params graphql.RawParams
	if err := json.NewDecoder(r.Body).Decode(&params); err != nil || params.Query == "" {
		writeErrors(w, http.StatusBadRequest, gqlerror.List{{Message: "the body must be a JSON GraphQL request", Extensions: map[string]any{"code": chat.CodeBadInput}}})
		return
	}
	op, errs := g.ops.Prepare(r.Context(), &params)
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs)
		return
	}
	p := auth.FromContext(r.Context())
	if op.Subscription != nil && g.cfg.Conns != nil {
		// A subscription is a connection like a WebSocket: the same caps.
		addr := auth.ClientAddrFrom(r.Context())
		if !g.cfg.Conns.Open() {
			g.cfg.Refusals.Connection(r.Context(), addr, principalID(p), r.Header.Get("Origin"), "--max-conns")
			w.Header().Set("Retry-After", "5")
			writeErrors(w, http.StatusServiceUnavailable, gqlerror.List{{Message: "too many connections on this node", Extensions: map[string]any{"code": chat.CodeUnavailable}}})
			return
		}
		defer g.cfg.Conns.Close()
		if p != nil {
			key := p.LimitKey(addr)
			if !g.cfg.Conns.Admit(key) {
				g.cfg.Refusals.Connection(r.Context(), addr, p.ID, r.Header.Get("Origin"), "--max-conns-per-principal")
				writeErrors(w, http.StatusTooManyRequests, gqlerror.List{{Message: "too many connections for this principal", Extensions: map[string]any{"code": chat.CodeTooManyConnections}}})
				return
			}
			defer g.cfg.Conns.Release(key)
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	if op.Subscription == nil {
		data, err := json.Marshal(g.ops.Execute(r.Context(), op))
		if err != nil {
			return
		}
		if len(data) > g.cfg.MaxResultBytes {
			data, _ = json.Marshal(map[string]any{"errors": gqlerror.List{{Message: "the result is larger than the server sends at once", Extensions: map[string]any{"code": chat.CodeResultTooLarge}}}})
		}
		_, _ = w.Write(sseEvent("next", data))
		_, _ = w.Write([]byte("event: complete\ndata: \n\n"))
		_ = rc.Flush()
		return
	}
	_ = rc.Flush()

	if g.cfg.OnSSE != nil {
		g.cfg.OnSSE(1)
		defer g.cfg.OnSSE(-1)
	}
	sink := &sseSink{shape: op.Subscription.Shape, out: make(chan []byte, g.cfg.QueueSize), full: make(chan struct{}), timeout: g.cfg.WriteTimeout}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Subscribing replays history into the queue this loop drains, so it runs
	// beside the loop; the handler waits for it before returning.
	type attached struct {
		sub *hub.Subscriber
		err error
	}
	attach := make(chan attached, 1)
	go func() {
		sub, err := g.hub.Subscribe(ctx, op.Subscription.SessionID, op.Subscription.After, sink)
		attach <- attached{sub, err}
	}()
	defer func() {
		cancel()
		if a := <-attach; a.sub != nil {
			a.sub.Close()
		}
	}()
	waiting := attach
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	// The stream ends when its token does (after the grace), as a WebSocket
	// does with 4401.
	var expired <-chan time.Time
	if p != nil && !p.Expires.IsZero() {
		t := time.NewTimer(time.Until(p.Expires) + g.cfg.TokenGrace)
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-expired:
			payload, _ := json.Marshal(map[string]any{"errors": gqlerror.List{{Message: "the token expired: authenticate again", Extensions: map[string]any{"code": chat.CodeUnauthenticated}}}})
			_ = rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			_, _ = w.Write(sseEvent("next", payload))
			_, _ = w.Write([]byte("event: complete\ndata: \n\n"))
			_ = rc.Flush()
			return
		case a := <-waiting:
			attach <- a // for the deferred close
			if a.err != nil {
				if !errors.Is(a.err, context.Canceled) {
					g.log.Error("sse subscribe", "session", op.Subscription.SessionID, "err", a.err)
				}
				payload, _ := json.Marshal(map[string]any{"errors": gqlerror.List{{Message: "could not subscribe, try again", Extensions: map[string]any{"code": chat.CodeUnavailable}}}})
				_, _ = w.Write(sseEvent("next", payload))
				_, _ = w.Write([]byte("event: complete\ndata: \n\n"))
				return
			}
			waiting = nil // attached; stop selecting on it
		case <-ctx.Done():
			return
		case <-g.closing:
			return // shutting down: the client reconnects and resumes
		case <-sink.full:
			return // too slow: the client reconnects and resumes
		case frame := <-sink.out:
			_ = rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			if _, err := w.Write(frame); err != nil {
				return
			}
			// Write what else is queued before one flush.
			for n := len(sink.out); n > 0; n-- {
				if _, err := w.Write(<-sink.out); err != nil {
					return
				}
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-keepAlive.C:
			_ = rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			if _, err := w.Write([]byte(":\n\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func sseEvent(event string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(event)+16)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// sseSink queues a subscription's events for the SSE handler's loop.
type sseSink struct {
	shape   *graph.Shape
	out     chan []byte
	full    chan struct{}
	closed  bool
	timeout time.Duration
}

func (s *sseSink) encode(sh *hub.Shared) []byte {
	data := sh.Encoded(s.shape, s.shape.Encode)
	b := make([]byte, 0, len(data)+32)
	b = append(b, "event: next\ndata: {\"data\":"...)
	b = append(b, data...)
	return append(b, "}\n\n"...)
}

// Deliver implements hub.Sink; the hub calls it from one goroutine.
func (s *sseSink) Deliver(sh *hub.Shared) bool {
	select {
	case s.out <- s.encode(sh):
		return true
	default:
		if !s.closed {
			s.closed = true
			close(s.full)
		}
		return false
	}
}

// Replay implements hub.Sink, waiting for room up to the write timeout.
func (s *sseSink) Replay(ctx context.Context, sh *hub.Shared) error {
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case s.out <- s.encode(sh):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("sse client too slow during replay")
	}
}

func writeErrors(w http.ResponseWriter, status int, errs gqlerror.List) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

func principalID(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	return p.ID
}
