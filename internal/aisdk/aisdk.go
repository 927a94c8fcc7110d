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
	"log/slog"
	"net/http"
	"time"

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

// Server serves the AI SDK's endpoints. The gateway hands it requests whose
// caller is authenticated, whose origin is allowed and, for POSTs, whose
// body is one bounded JSON object.
type Server struct {
	streams *stream.Answers
	answers Answers
	timeout time.Duration
	log     *slog.Logger
}

// NewServer returns the AI SDK endpoints, streaming through streams. What
// a request does before it streams (following the session, asking,
// finding the answer in flight, cancelling) may take up to timeout
// (--operation-timeout; 0 for no bound).
func NewServer(streams *stream.Answers, answers Answers, timeout time.Duration, log *slog.Logger) *Server {
	return &Server{streams: streams, answers: answers, timeout: timeout, log: log}
}

// maxMessages bounds the messages of a request: the client sends its whole
// history, of which only the last message is read.
const maxMessages = 1000

// Chat answers POST /api/chat: asks the last user message in the chat's
// session and streams its answer.
func (s *Server) Chat(w http.ResponseWriter, r *http.Request) {
	q, err := decodeChat(r.Body, maxMessages)
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
	op, cancel := graph.OperationContext(ctx, s.timeout)
	defer cancel()
	// Attached before asking: no event of the answer can be missed.
	f := s.streams.Follow(ctx, q.Session, nil)
	defer f.Close()
	if err := f.Attached(op); err != nil {
		s.log.Warn("ai sdk: subscribe", "session", q.Session, "err", err)
		graph.WriteError(w, graph.OperationError(op, &chat.Error{Code: chat.CodeUnavailable, Message: "could not follow the session, try again"}))
		return
	}
	input := model.GetLlmResponseInput{SessionID: q.Session, Message: q.Text, Locale: q.Locale}
	if q.Model != "" {
		input.Model = &q.Model
	}
	request, err := s.answers.Ask(op, input)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return
	}
	s.stream(w, r, f, q.Session, request)
}

// Resume answers GET /api/chat/{id}/stream: the answer in flight from its
// START, then live; 204 when none is.
func (s *Server) Resume(w http.ResponseWriter, r *http.Request) {
	op, cancel := graph.OperationContext(r.Context(), s.timeout)
	defer cancel()
	session, request, after, ok := s.pending(op, w, r)
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
	f := s.streams.Follow(r.Context(), session, after)
	defer f.Close()
	s.stream(w, r, f, session, request)
}

// Stop answers POST /api/chat/{id}/stop: the answer in flight (or waiting)
// is cancelled at the provider, as cancelResponse does.
func (s *Server) Stop(w http.ResponseWriter, r *http.Request) {
	op, cancel := graph.OperationContext(r.Context(), s.timeout)
	defer cancel()
	session, request, _, ok := s.pending(op, w, r)
	if !ok {
		return
	}
	cancelled := false
	if request != "" {
		var err error
		if cancelled, err = s.answers.Cancel(op, session, request); err != nil {
			graph.WriteError(w, graph.OperationError(op, err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(stopResult{RequestID: request, Cancelled: cancelled})
}

// pending finds the answer not ended of the chat {id}, for its owner,
// within op; it has answered when ok is false.
func (s *Server) pending(op context.Context, w http.ResponseWriter, r *http.Request) (session, request string, after *uint64, ok bool) {
	session = r.PathValue("id")
	if !chat.ValidSessionID(session) {
		graph.WriteError(w, &chat.Error{Code: chat.CodeBadSessionID, Message: "the chat id (our sessionId) must be 1 to 128 letters, digits, '-' or '_'"})
		return "", "", nil, false
	}
	request, after, err := s.answers.Pending(op, session)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return "", "", nil, false
	}
	return session, request, after, true
}

type stopResult struct {
	RequestID string `json:"requestId,omitempty"`
	Cancelled bool   `json:"cancelled"`
}

// admit takes a streaming connection's slots; it has answered when ok is
// false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*stream.Lease, bool) {
	lease, err := s.streams.Admit(r)
	if err != nil {
		graph.WriteError(w, err)
		return nil, false
	}
	return lease, true
}

// stream writes the answer to request as a UI message stream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, f *stream.Follower, session, request string) {
	stream.WriteHeader(w, http.Header{"X-Vercel-Ai-Ui-Message-Stream": {"v1"}})
	if err := s.streams.Serve(r, w, f, nil, request, &encoder{}); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("ai sdk stream ended early", "session", session, "request", request, "err", err)
	}
}
