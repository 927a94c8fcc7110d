package agui

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns reading RunAgentInput, what @ag-ui/client's HttpAgent
// POSTs: {threadId, runId, messages, tools, state, context, forwardedProps,
// resume}. Tools, state and context are the client's and not used: the
// server's tools run, the server's conversation is the context.

// runInput is the body of POST /api/agui.
type runInput struct {
	ThreadID       string            `json:"threadId"`
	RunID          string            `json:"runId"`
	Messages       []json.RawMessage `json:"messages"`
	Resume         []resumeEntry     `json:"resume"`
	ForwardedProps *forwardedProps   `json:"forwardedProps"`
}

// inputMessage is a message of the client's history; only the last is read.
type inputMessage struct {
	ID      string          `json:"id"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// resumeEntry answers an interrupt of the run before.
type resumeEntry struct {
	InterruptID string `json:"interruptId"`
	Status      string `json:"status"`
	Payload     *struct {
		Approved *bool  `json:"approved"`
		Reason   string `json:"reason"`
	} `json:"payload"`
}

// forwardedProps are the app's own settings for a run; we read locale,
// model and the last event id.
type forwardedProps struct {
	Locale      string          `json:"locale"`
	Model       string          `json:"model"`
	LastEventID json.RawMessage `json:"lastEventId"`
}

// run is what a RunAgentInput asks for: a question, or the answers to the
// interrupts of the run before.
type run struct {
	Thread string
	RunID  string
	// Asks says the last message is the user's question; a run that asks
	// nothing re-attaches to the thread (see Server.ServeHTTP).
	Asks     bool
	Question string
	Locale   string
	Model    string
	Answers  []approvalAnswer
	// After, when set, is the last event the client holds (its id): the
	// run re-attaches and goes on after it.
	After *uint64
	// History is the client's messages as sent.
	History []json.RawMessage
}

// approvalAnswer answers one interrupt: an approval of a tool call.
type approvalAnswer struct {
	Interrupt
	Approved bool
	Reason   string
}

// Limits of a RunAgentInput.
const (
	maxResumeEntries = 16
	maxReasonRunes   = 1000
)

// decodeRun reads a RunAgentInput. With resume entries it answers the
// interrupts they name; otherwise, when the last message is the user's, it
// is the question. lastEventHeader is the request's Last-Event-ID; a
// forwardedProps.lastEventId takes its place. Errors carry a stable code and
// a safe message.
func decodeRun(body io.Reader, lastEventHeader string, maxMessages int) (run, error) {
	var in runInput
	if err := json.NewDecoder(body).Decode(&in); err != nil {
		return run{}, badInput("the body must be an AG-UI RunAgentInput: {threadId, runId, messages, …}")
	}
	if !chat.ValidSessionID(in.ThreadID) {
		return run{}, &chat.Error{Code: chat.CodeBadSessionID, Message: "threadId (our sessionId) must be 1 to 128 letters, digits, '-' or '_'"}
	}
	if !chat.ValidRequestID(in.RunID) {
		return run{}, &chat.Error{Code: chat.CodeBadRequestID, Message: "runId (our requestId) must be 1 to 128 letters, digits, '-' or '_'"}
	}
	if len(in.Messages) > maxMessages {
		return run{}, badInput("too many messages: the server keeps the conversation, send the last ones only")
	}
	r := run{Thread: in.ThreadID, RunID: in.RunID, Locale: "en", History: in.Messages}
	last := lastEventHeader
	if p := in.ForwardedProps; p != nil {
		if p.Locale != "" {
			r.Locale = p.Locale
		}
		r.Model = p.Model
		if len(p.LastEventID) > 0 && string(p.LastEventID) != "null" {
			var s string
			if json.Unmarshal(p.LastEventID, &s) != nil {
				s = string(p.LastEventID) // a number
			}
			last = s
		}
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil || n == 0 {
			return run{}, badCursor()
		}
		r.After = &n
	}
	if len(in.Resume) > 0 {
		if len(in.Resume) > maxResumeEntries {
			return run{}, badInput("too many resume entries")
		}
		for _, e := range in.Resume {
			a, err := decodeAnswer(e)
			if err != nil {
				return run{}, err
			}
			r.Answers = append(r.Answers, a)
		}
		return r, nil
	}
	if len(in.Messages) == 0 || r.After != nil {
		return r, nil // a run with a last event id re-attaches, never asks
	}
	var lastMsg inputMessage
	if err := json.Unmarshal(in.Messages[len(in.Messages)-1], &lastMsg); err != nil {
		return run{}, badInput("a message is an object: {id, role, content}")
	}
	if lastMsg.Role != "user" {
		return r, nil
	}
	q, ok := messageText(lastMsg.Content)
	if !ok {
		return run{}, badInput("a user message's content is a string or a list of content parts")
	}
	r.Asks, r.Question = true, q
	return r, nil
}

// decodeAnswer reads a resume entry: resolved approves unless its payload
// says approved: false; cancelled denies.
func decodeAnswer(e resumeEntry) (approvalAnswer, error) {
	in, ok := parseInterruptID(e.InterruptID)
	if !ok {
		return approvalAnswer{}, badInput("resume names an interrupt this server did not send")
	}
	a := approvalAnswer{Interrupt: in}
	switch e.Status {
	case "resolved":
		a.Approved = e.Payload == nil || e.Payload.Approved == nil || *e.Payload.Approved
	case "cancelled":
	default:
		return approvalAnswer{}, badInput("a resume entry's status is resolved or cancelled")
	}
	if e.Payload != nil {
		a.Reason = e.Payload.Reason
	}
	if len([]rune(a.Reason)) > maxReasonRunes {
		return approvalAnswer{}, badInput("a resume entry's reason must be at most 1000 characters")
	}
	return a, nil
}

// messageText is a user message's text: its content as a string, or the
// text of its text parts.
func messageText(content json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(content, &s); err == nil {
		return s, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return "", false
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Text)
	}
	return b.String(), true
}

// Interrupt is an approval pause as AG-UI names it: the answer, the history
// position of its APPROVAL_REQUESTED event (the resumed run goes on after
// it) and the tool call. Its id is "<request>:<seq>:<call>": a request id
// has no colon, so a call id may hold any.
type Interrupt struct {
	Request string
	Seq     uint64
	Call    string
}

// ID is the interrupt's id.
func (in Interrupt) ID() string {
	return in.Request + ":" + strconv.FormatUint(in.Seq, 10) + ":" + in.Call
}

func parseInterruptID(id string) (Interrupt, bool) {
	request, rest, ok := strings.Cut(id, ":")
	if !ok || !chat.ValidRequestID(request) {
		return Interrupt{}, false
	}
	seq, call, ok := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || call == "" || len(call) > 256 {
		return Interrupt{}, false
	}
	return Interrupt{Request: request, Seq: n, Call: call}, true
}

func badInput(msg string) error { return &chat.Error{Code: chat.CodeBadInput, Message: msg} }

// badCursor refuses a last event id that names no event of the thread,
// whether malformed, unknown, gone from the history or another thread's:
// one answer for all, so an id tells nothing of other threads.
func badCursor() error {
	return &chat.Error{Code: chat.CodeBadCursor, Message: "the last event id names no event of this thread: run again without it"}
}
