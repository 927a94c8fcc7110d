// Package agui serves the AG-UI protocol (@ag-ui/client's HttpAgent): POST
// /api/agui takes a RunAgentInput and streams the run as AG-UI events. The
// thread is the session, the run id the request id; an approval pause ends
// the run with an interrupt outcome, and the next run's resume answers it.
// Like every protocol it is a view of the session's durable event log:
// asking, ownership and approvals are the GraphQL resolvers' own, replay is
// the hub's, and a stream is held to the same stream.Policy as every other.
package agui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/stream"
)

// Answers is what a run needs of asking, approving and reading a session
// (graph.Resolver): its errors carry a stable code and a safe message.
type Answers interface {
	Ask(ctx context.Context, input model.GetLlmResponseInput) (string, error)
	Approve(ctx context.Context, session, request, call string, approved bool, reason string) error
	Pending(ctx context.Context, session string) (request string, after *uint64, err error)
	Turns(ctx context.Context, session string) ([]chat.Turn, error)
	// EventAt is the session's event at a history position, nil when the
	// session has none there.
	EventAt(ctx context.Context, session string, seq uint64) (*chat.Event, error)
}

// Server serves AG-UI runs. The gateway hands it requests whose caller is
// authenticated, whose origin is allowed and whose body is one bounded JSON
// object.
type Server struct {
	streams *stream.Answers
	answers Answers
	timeout time.Duration
	log     *slog.Logger
}

// NewServer returns the AG-UI endpoint, streaming through streams. What a
// run does before it streams (answering interrupts, reading the thread,
// asking) may take up to timeout (--operation-timeout; 0 for no bound).
func NewServer(streams *stream.Answers, answers Answers, timeout time.Duration, log *slog.Logger) *Server {
	return &Server{streams: streams, answers: answers, timeout: timeout, log: log}
}

// maxMessages bounds the messages of a run: the client sends its whole
// history, of which only the last message is read.
const maxMessages = 1000

// ServeHTTP runs a RunAgentInput: the answers to the interrupts of the run
// before; with a last event id, the answer it belongs to after it; a run
// asked before (its id again): the conversation if it ended, else the run
// from its START; a question; or, asking nothing, the answer in flight in
// the thread from its START, else the conversation. AG-UI has no replay
// cursor of its own: a client re-attaches by running again, with the id of
// the last event it holds (Last-Event-ID, or forwardedProps.lastEventId)
// if it kept one.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in, err := decodeRun(r.Body, r.Header.Get("Last-Event-ID"), maxMessages)
	if err != nil {
		graph.WriteError(w, err)
		return
	}
	op, cancel := graph.OperationContext(r.Context(), s.timeout)
	defer cancel()
	if len(in.Answers) > 0 {
		s.resume(op, w, r, in)
		return
	}
	if in.After != nil {
		s.resumeAfter(op, w, r, in)
		return
	}
	turns, err := s.answers.Turns(op, in.Thread)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return
	}
	asked, ended := false, false
	for _, t := range turns {
		if t.RequestID == in.RunID {
			asked = asked || t.Role == chat.RoleUser
			ended = ended || (t.Role == chat.RoleAssistant && t.Status != chat.StatusInProgress)
		}
	}
	switch {
	case ended:
		s.snapshot(w, r, in, turns)
	case asked:
		s.rerun(op, w, r, in, in.RunID)
	case in.Asks:
		s.ask(op, w, r, in)
	default:
		s.rerun(op, w, r, in, "")
	}
}

// ask asks the run's question, within op, and streams its answer.
func (s *Server) ask(op context.Context, w http.ResponseWriter, r *http.Request, in run) {
	ctx := r.Context()
	lease, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer lease.Release()
	// Attached before asking: no event of the answer can be missed.
	f := s.streams.Follow(ctx, in.Thread, nil)
	defer f.Close()
	if err := f.Attached(op); err != nil {
		s.log.Warn("ag-ui: subscribe", "session", in.Thread, "err", err)
		graph.WriteError(w, graph.OperationError(op, &chat.Error{Code: chat.CodeUnavailable, Message: "could not follow the thread, try again"}))
		return
	}
	input := model.GetLlmResponseInput{SessionID: in.Thread, Message: in.Question, Locale: in.Locale, RequestID: &in.RunID}
	if in.Model != "" {
		input.Model = &in.Model
	}
	request, err := s.answers.Ask(op, input)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return
	}
	s.stream(w, r, f, in, request, nil)
}

// rerun streams the answer to request from its START (AG-UI has no
// cursor), then live; with no request, the thread's answer in flight, or
// its conversation when none is. It reads the thread within op.
func (s *Server) rerun(op context.Context, w http.ResponseWriter, r *http.Request, in run, request string) {
	pending, after, err := s.answers.Pending(op, in.Thread)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return
	}
	switch {
	case request == "" && pending == "":
		turns, err := s.answers.Turns(op, in.Thread)
		if err != nil {
			graph.WriteError(w, graph.OperationError(op, err))
			return
		}
		s.snapshot(w, r, in, turns)
		return
	case request == "":
		request = pending
	case pending != request:
		after = nil // queued behind another answer: it starts live
	}
	s.follow(w, r, in, request, after)
}

// resume answers the interrupts of the run before, as answerApproval does,
// within op, and streams the run on from the pause.
func (s *Server) resume(op context.Context, w http.ResponseWriter, r *http.Request, in run) {
	first := in.Answers[0].Interrupt
	for _, a := range in.Answers {
		if a.Request != first.Request {
			graph.WriteError(w, badInput("resume answers the interrupts of one run"))
			return
		}
		err := s.answers.Approve(op, in.Thread, a.Request, a.Call, a.Approved, a.Reason)
		if err != nil && chat.ErrorCode(err) != chat.CodeAlreadyAnswered {
			graph.WriteError(w, graph.OperationError(op, err)) // an answer sent twice goes on as once
			return
		}
		first.Seq = min(first.Seq, a.Seq)
	}
	s.follow(w, r, in, first.Request, &first.Seq)
}

// follow streams the events of request after the cursor after.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, in run, request string, after *uint64) {
	lease, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer lease.Release()
	f := s.streams.Follow(r.Context(), in.Thread, after)
	defer f.Close()
	s.stream(w, r, f, in, request, nil)
}

// snapshot answers a run that ended with the thread's conversation.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, in run, turns []chat.Turn) {
	e := newEncoder(in.Thread, in.RunID)
	b := e.Started(nil)
	msgs := make([]message, 0, len(turns))
	for _, t := range turns {
		m := message{ID: t.RequestID + "-user", Role: "user", Content: t.Text}
		if t.Role == chat.RoleAssistant {
			m.ID, m.Role = t.RequestID, "assistant"
		}
		msgs = append(msgs, m)
	}
	b = appendEvent(b, event{Type: "MESSAGES_SNAPSHOT", Messages: msgs})
	b = e.finished(b, &outcome{Type: "success"}, nil, "")
	stream.WriteHeader(w, nil)
	_, _ = w.Write(b)
}

// message is a message of a MESSAGES_SNAPSHOT.
type message struct {
	ID      string `json:"id"`
	Role    string `json:"role"`
	Content string `json:"content"`
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

// stream writes the run: RUN_STARTED, then the events of request; after,
// when set, is the last event the client holds (see resumeAfter).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, f *stream.Follower, in run, request string, after *uint64) {
	stream.WriteHeader(w, nil)
	e := newEncoder(in.Thread, in.RunID)
	e.history = in.History
	var enc stream.Encoder = e
	if after != nil {
		enc = &resumed{enc: e, cursor: *after}
	}
	if err := s.streams.Serve(r, w, f, e.Started(nil), request, enc); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("ag-ui stream ended early", "session", in.Thread, "request", request, "err", err)
	}
}
