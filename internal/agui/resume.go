package agui

import (
	"context"
	"net/http"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
)

// This file owns re-running after the last event a client holds: the id
// tokencast gave it (an SSE id line, and metadata.eventId on the event) is
// the stored event's position in the session's history, so a run that
// broke off goes on exactly after it, on any node, as a run of its own.

// resumeAfter streams the answer the client's last event belongs to, after
// that event. An id that names no event of the thread, the caller's own,
// is refused alike, whatever the reason. The event is read within op.
func (s *Server) resumeAfter(op context.Context, w http.ResponseWriter, r *http.Request, in run) {
	seq := *in.After
	ev, err := s.answers.EventAt(op, in.Thread, seq)
	if err != nil {
		graph.WriteError(w, graph.OperationError(op, err))
		return
	}
	if ev == nil || ev.RequestID == "" {
		graph.WriteError(w, badCursor())
		return
	}
	start := ev.AnswerStart()
	if ev.Type == chat.EventRestart || ev.Type == chat.EventApprovalRequested || start == 0 {
		// Nothing is open after it: the run goes on from there.
		s.follow(w, r, in, ev.RequestID, &seq)
		return
	}
	lease, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer lease.Release()
	// From the answer's START, so the run knows what the client holds
	// open; what came up to the last event is not sent again.
	from := start - 1
	f := s.streams.Follow(r.Context(), in.Thread, &from)
	defer f.Close()
	s.stream(w, r, f, in, ev.RequestID, &seq)
}

// resumed frames a run that goes on after the client's last event: the
// events up to it only tell the encoder what is open; the first one after
// it opens that again (a step, tool calls, the message in flight, under
// their own ids) and the run goes on from there, valid on its own to
// @ag-ui/client's verifier.
type resumed struct {
	enc    *encoder
	cursor uint64
	live   bool
}

// Event implements stream.Encoder.
func (r *resumed) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	if !r.live && ev.Seq != 0 && ev.Seq <= r.cursor {
		return r.skip(b, ev)
	}
	if !r.live {
		r.live = true
		r.enc.reopen()
	}
	return r.enc.Event(b, ev)
}

// skip takes in an event the client holds, sending nothing, unless it ends
// the answer: then the client holds all of it, and the run ends as the
// answer did.
func (r *resumed) skip(b []byte, ev *chat.Event) ([]byte, bool) {
	if ev.Type == chat.EventApprovalRequested {
		// The run that showed it ended there; the next one began afresh.
		r.enc.forget()
		return b, false
	}
	done := r.enc.event(ev)
	r.enc.out = r.enc.out[:0]
	if !done {
		return b, false
	}
	r.enc.forget()
	r.enc.event(ev)
	return r.enc.flush(b, ev.Seq), true
}

// Fail implements stream.Encoder.
func (r *resumed) Fail(b []byte, code, message string) []byte { return r.enc.Fail(b, code, message) }
