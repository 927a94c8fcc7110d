// Package aisdk serves the Vercel AI SDK's UI message stream protocol (the
// `ai` package's DefaultChatTransport and useChat): POST /api/chat asks and
// streams the answer, GET /api/chat/{id}/stream resumes the answer in
// flight from its START, POST /api/chat/{id}/stop cancels it at the
// provider. It is a view of the session's durable event log: asking,
// ownership and cancelling are the GraphQL resolvers' own, replay is the
// hub's, and a stream is held to the same stream.Policy as every other.
package aisdk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/stream"
)

// Answers is what the endpoints need of asking and cancelling
// (graph.Resolver): its errors carry a stable code and a safe message.
type Answers interface {
	Ask(ctx context.Context, input model.GetLlmResponseInput) (string, error)
	Cancel(ctx context.Context, session, request string) (bool, error)
	Pending(ctx context.Context, session string) (request string, after *uint64, err error)
}

// Config bounds the endpoints.
type Config struct {
	// MaxMessages bounds the messages a chat request may carry (default
	// 1000); only the last is read.
	MaxMessages int
	// QueueSize bounds the events waiting for a slow client.
	QueueSize int
	// WriteTimeout bounds a write to the client.
	WriteTimeout time.Duration
	// OnStream is called with +1 when a stream opens and -1 when it ends.
	OnStream func(delta int)
}

// Server serves the AI SDK's endpoints. The gateway hands it requests whose
// caller is authenticated, whose origin is allowed and, for POSTs, whose
// body is one bounded JSON object.
type Server struct {
	cfg     Config
	policy  *stream.Policy
	answers Answers
	hub     stream.Hub
	log     *slog.Logger
	closing chan struct{}
	once    sync.Once
}

// NewServer returns the AI SDK endpoints.
func NewServer(cfg Config, policy *stream.Policy, answers Answers, h stream.Hub, log *slog.Logger) *Server {
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 1000
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	return &Server{cfg: cfg, policy: policy, answers: answers, hub: h, log: log, closing: make(chan struct{})}
}

// Shutdown ends every stream; clients resume on another node.
func (s *Server) Shutdown() { s.once.Do(func() { close(s.closing) }) }

// Chat answers POST /api/chat: asks the last user message in the chat's
// session and streams its answer.
func (s *Server) Chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		graph.WriteError(w, &chat.Error{Code: chat.CodeBadInput, Message: "could not read the body"})
		return
	}
	q, err := decodeChat(body, s.cfg.MaxMessages)
	if err != nil {
		graph.WriteError(w, err)
		return
	}
	ctx := r.Context()
	lease, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer lease.Release()
	// Attached before asking: no event of the answer can be missed.
	f := stream.Follow(ctx, s.hub, q.Session, nil, s.cfg.QueueSize)
	defer f.Close()
	if err := f.Attached(ctx); err != nil {
		s.log.Warn("ai sdk: subscribe", "session", q.Session, "err", err)
		graph.WriteError(w, &chat.Error{Code: chat.CodeUnavailable, Message: "could not follow the session, try again"})
		return
	}
	input := model.GetLlmResponseInput{SessionID: q.Session, Message: q.Text, Locale: q.Locale}
	if q.Model != "" {
		input.Model = &q.Model
	}
	request, err := s.answers.Ask(ctx, input)
	if err != nil {
		graph.WriteError(w, err)
		return
	}
	s.stream(w, r, f, q.Session, request)
}

// Resume answers GET /api/chat/{id}/stream: the answer in flight from its
// START, then live; 204 when none is.
func (s *Server) Resume(w http.ResponseWriter, r *http.Request) {
	session, request, after, ok := s.pending(w, r)
	if !ok {
		return
	}
	if request == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	lease, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer lease.Release()
	f := stream.Follow(r.Context(), s.hub, session, after, s.cfg.QueueSize)
	defer f.Close()
	s.stream(w, r, f, session, request)
}

// Stop answers POST /api/chat/{id}/stop: the answer in flight (or waiting)
// is cancelled at the provider, as cancelResponse does.
func (s *Server) Stop(w http.ResponseWriter, r *http.Request) {
	session, request, _, ok := s.pending(w, r)
	if !ok {
		return
	}
	cancelled := false
	if request != "" {
		var err error
		if cancelled, err = s.answers.Cancel(r.Context(), session, request); err != nil {
			graph.WriteError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(stopResult{RequestID: request, Cancelled: cancelled})
}

// pending finds the answer not ended of the chat {id}, for its owner; it
// has answered when ok is false.
func (s *Server) pending(w http.ResponseWriter, r *http.Request) (session, request string, after *uint64, ok bool) {
	session = r.PathValue("id")
	if !chat.ValidSessionID(session) {
		graph.WriteError(w, &chat.Error{Code: chat.CodeBadSessionID, Message: "the chat id (our sessionId) must be 1 to 128 letters, digits, '-' or '_'"})
		return "", "", nil, false
	}
	request, after, err := s.answers.Pending(r.Context(), session)
	if err != nil {
		graph.WriteError(w, err)
		return "", "", nil, false
	}
	return session, request, after, true
}

type stopResult struct {
	RequestID string `json:"requestId,omitempty"`
	Cancelled bool   `json:"cancelled"`
}

// admit takes a streaming connection's slots, as every stream does; it has
// answered when ok is false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*stream.Lease, bool) {
	lease := s.policy.Lease(auth.ClientAddrFrom(r.Context()), r.Header.Get("Origin"))
	if err := lease.Admit(r.Context(), auth.FromContext(r.Context())); err != nil {
		if errors.Is(err, stream.ErrNodeFull) {
			w.Header().Set("Retry-After", "5")
			graph.WriteError(w, &chat.Error{Code: chat.CodeUnavailable, Message: "too many connections on this node"})
			return nil, false
		}
		graph.WriteError(w, &chat.Error{Code: chat.CodeTooManyConnections, Message: "too many connections for this principal"})
		return nil, false
	}
	return lease, true
}

// stream writes the answer to request as a UI message stream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, f *stream.Follower, session, request string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Vercel-Ai-Ui-Message-Stream", "v1")
	w.WriteHeader(http.StatusOK)
	if s.cfg.OnStream != nil {
		s.cfg.OnStream(1)
		defer s.cfg.OnStream(-1)
	}
	err := s.policy.ServeAnswer(r.Context(), w, auth.FromContext(r.Context()), f, request, &encoder{},
		stream.AnswerConfig{WriteTimeout: s.cfg.WriteTimeout, Closing: s.closing})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("ai sdk stream ended early", "session", session, "request", request, "err", err)
	}
}
