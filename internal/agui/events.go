package agui

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/stream"
)

// This file owns the mapping of an answer's events to AG-UI events
// (@ag-ui/core's EventSchema): one table, in docs/clients.md, event for
// event. The stream is held to what @ag-ui/client's verifier demands: every
// message, reasoning span, tool call and step that opens is closed before
// RUN_FINISHED.

// event is one AG-UI event; the fields a type does not use are left out.
type event struct {
	Type            string   `json:"type"`
	ThreadID        string   `json:"threadId,omitempty"`
	RunID           string   `json:"runId,omitempty"`
	MessageID       string   `json:"messageId,omitempty"`
	Role            string   `json:"role,omitempty"`
	Delta           *string  `json:"delta,omitempty"`
	ToolCallID      string   `json:"toolCallId,omitempty"`
	ToolCallName    string   `json:"toolCallName,omitempty"`
	Content         *string  `json:"content,omitempty"`
	StepName        string   `json:"stepName,omitempty"`
	Name            string   `json:"name,omitempty"`
	Value           any      `json:"value,omitempty"`
	Message         string   `json:"message,omitempty"`
	Code            string   `json:"code,omitempty"`
	Outcome         *outcome `json:"outcome,omitempty"`
	Usage           []usage  `json:"usage,omitempty"`
	Messages        any      `json:"messages,omitempty"` // []message, or the client's own
	ParentMessageID string   `json:"parentMessageId,omitempty"`
	// Metadata, on the last AG-UI event made of a stored event, names it:
	// a client that lost the run re-runs with it as its last event id.
	Metadata *eventMetadata `json:"metadata,omitempty"`
}

// eventMetadata is BaseEvent's metadata as tokencast fills it.
type eventMetadata struct {
	// EventID is the stored event's position in the session's history,
	// as the SSE id line says it.
	EventID string `json:"eventId"`
}

// outcome is how a run finished: success, interrupt or cancelled.
type outcome struct {
	Type       string      `json:"type"`
	Interrupts []interrupt `json:"interrupts,omitempty"`
}

// interrupt is a pause the next run's resume answers.
type interrupt struct {
	ID         string          `json:"id"`
	Reason     string          `json:"reason"`
	Message    string          `json:"message,omitempty"`
	ToolCallID string          `json:"toolCallId,omitempty"`
	ExpiresAt  string          `json:"expiresAt,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// usage is AG-UI's TokenUsage.
type usage struct {
	Model                 string `json:"model,omitempty"`
	InputTokens           int    `json:"inputTokens"`
	OutputTokens          int    `json:"outputTokens"`
	TotalTokens           int    `json:"totalTokens"`
	ReasoningTokens       int    `json:"reasoningTokens,omitempty"`
	CachedInputTokens     int    `json:"cachedInputTokens,omitempty"`
	CacheWriteInputTokens int    `json:"cacheWriteInputTokens,omitempty"`
}

// encoder frames one run's events, keeping what is open. Message ids are
// the answer's request id, its attempt and the index of the event that
// opened them, so a replay names them the same and a restarted attempt
// names them anew.
type encoder struct {
	thread, run     string
	text, reasoning string            // the open message ids, "" for none
	step            int               // the open step's number, 0 for none
	tools           map[string]int    // tool calls: 1 started, 2 ended
	names           map[string]string // the tool calls' names
	calls           []string          // the tool calls in the order they started
	// history is the client's messages as the run got them; a restart
	// of the answer sends them back, without the answer's own.
	history []json.RawMessage
	out     []event // the events made of the stored event being framed
}

func newEncoder(thread, run string) *encoder { return &encoder{thread: thread, run: run} }

func appendEvent(b []byte, ev event) []byte { return stream.AppendData(b, ev) }

func str(s string) *string { return &s }

// emit adds ev to what the stored event being framed makes.
func (e *encoder) emit(ev event) { e.out = append(e.out, ev) }

// flush appends what was emitted; the last event carries the stored
// event's position seq (none when 0) as its SSE id and metadata.
func (e *encoder) flush(b []byte, seq uint64) []byte {
	for i, ev := range e.out {
		if i == len(e.out)-1 && seq != 0 {
			id := strconv.FormatUint(seq, 10)
			ev.Metadata = &eventMetadata{EventID: id}
			b = append(b, "id: "...)
			b = append(b, id...)
			b = append(b, '\n')
		}
		b = appendEvent(b, ev)
	}
	e.out = e.out[:0]
	return b
}

// Started appends RUN_STARTED, which opens every stream.
func (e *encoder) Started(b []byte) []byte {
	return appendEvent(b, event{Type: "RUN_STARTED", ThreadID: e.thread, RunID: e.run})
}

func id(ev *chat.Event, kind string) string {
	return ev.RequestID + "-" + strconv.FormatUint(ev.Attempt, 10) + "-" + kind + "-" + strconv.Itoa(ev.Index)
}

// closeText ends the open text message.
func (e *encoder) closeText() {
	if e.text != "" {
		e.emit(event{Type: "TEXT_MESSAGE_END", MessageID: e.text})
		e.text = ""
	}
}

// closeReasoning ends the open reasoning message and its span.
func (e *encoder) closeReasoning() {
	if e.reasoning != "" {
		e.emit(event{Type: "REASONING_MESSAGE_END", MessageID: e.reasoning})
		e.emit(event{Type: "REASONING_END", MessageID: e.reasoning})
		e.reasoning = ""
	}
}

// closeAll ends every message, tool call and the step.
func (e *encoder) closeAll() {
	e.closeText()
	e.closeReasoning()
	for _, call := range e.calls {
		if e.tools[call] == 1 {
			e.emit(event{Type: "TOOL_CALL_END", ToolCallID: call})
			e.tools[call] = 2
		}
	}
	if e.step > 0 {
		e.emit(event{Type: "STEP_FINISHED", StepName: stepName(e.step)})
		e.step = 0
	}
}

// reopen opens again, in a new run, what was open when the client's last
// run broke off: the same step, tool calls and message ids, so the client
// goes on with what it holds (HttpAgent appends to a message it has).
func (e *encoder) reopen() {
	if e.step > 0 {
		e.emit(event{Type: "STEP_STARTED", StepName: stepName(e.step)})
	}
	for _, call := range e.calls {
		if e.tools[call] == 1 {
			e.emit(event{Type: "TOOL_CALL_START", ToolCallID: call, ToolCallName: e.names[call]})
		}
	}
	if e.reasoning != "" {
		e.emit(event{Type: "REASONING_START", MessageID: e.reasoning})
		e.emit(event{Type: "REASONING_MESSAGE_START", MessageID: e.reasoning, Role: "reasoning"})
	}
	if e.text != "" {
		e.emit(event{Type: "TEXT_MESSAGE_START", MessageID: e.text, Role: "assistant"})
	}
}

// forget drops what is open without closing it: the run that showed it
// ended (an approval pause), and the next run starts afresh.
func (e *encoder) forget() {
	e.text, e.reasoning, e.step = "", "", 0
	e.tools, e.names, e.calls = nil, nil, nil
}

func stepName(n int) string { return "step " + strconv.Itoa(n) }

// finish emits RUN_FINISHED with o, after closing what is open.
func (e *encoder) finish(o *outcome, u *chat.Usage, model string) {
	e.closeAll()
	ev := event{Type: "RUN_FINISHED", ThreadID: e.thread, RunID: e.run, Outcome: o}
	if u != nil {
		ev.Usage = []usage{{Model: model, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens,
			ReasoningTokens: u.ReasoningTokens, CachedInputTokens: u.CacheReadTokens, CacheWriteInputTokens: u.CacheWriteTokens}}
	}
	e.emit(ev)
}

// finished appends RUN_FINISHED with o, after closing what is open.
func (e *encoder) finished(b []byte, o *outcome, u *chat.Usage, model string) []byte {
	e.finish(o, u, model)
	return e.flush(b, 0)
}

// Event implements stream.Encoder.
func (e *encoder) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	done := e.event(ev)
	return e.flush(b, ev.Seq), done
}

// event emits the AG-UI events of ev; it says whether the run is over.
func (e *encoder) event(ev *chat.Event) bool {
	switch ev.Type {
	case chat.EventStart:
		e.step = 1
		e.emit(event{Type: "STEP_STARTED", StepName: stepName(1)})
	case chat.EventDelta:
		if ev.Message == "" {
			return false
		}
		e.closeReasoning()
		if e.text == "" {
			e.text = id(ev, "text")
			e.emit(event{Type: "TEXT_MESSAGE_START", MessageID: e.text, Role: "assistant"})
		}
		e.emit(event{Type: "TEXT_MESSAGE_CONTENT", MessageID: e.text, Delta: str(ev.Message)})
	case chat.EventReasoning:
		if ev.Message == "" {
			return false
		}
		e.closeText()
		if e.reasoning == "" {
			e.reasoning = id(ev, "reasoning")
			e.emit(event{Type: "REASONING_START", MessageID: e.reasoning})
			e.emit(event{Type: "REASONING_MESSAGE_START", MessageID: e.reasoning, Role: "reasoning"})
		}
		e.emit(event{Type: "REASONING_MESSAGE_CONTENT", MessageID: e.reasoning, Delta: str(ev.Message)})
	case chat.EventToolCallStart:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] != 0 {
			return false
		}
		e.closeText()
		e.closeReasoning()
		e.startTool(ev, ev.Tool.CallID, ev.Tool.Name)
	case chat.EventToolCallDelta:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] != 1 {
			return false
		}
		e.emit(event{Type: "TOOL_CALL_ARGS", ToolCallID: ev.Tool.CallID, Delta: str(ev.Message)})
	case chat.EventToolCall:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] == 2 {
			return false
		}
		if e.tools[ev.Tool.CallID] == 0 {
			// No start was seen (a resumed run): the whole input at once.
			e.closeText()
			e.closeReasoning()
			e.startTool(ev, ev.Tool.CallID, ev.Tool.Name)
			e.emit(event{Type: "TOOL_CALL_ARGS", ToolCallID: ev.Tool.CallID, Delta: str(string(ev.Tool.Input))})
		}
		e.tools[ev.Tool.CallID] = 2
		e.emit(event{Type: "TOOL_CALL_END", ToolCallID: ev.Tool.CallID})
	case chat.EventToolResult:
		if ev.Tool == nil {
			return false
		}
		e.emit(event{Type: "TOOL_CALL_RESULT", MessageID: id(ev, "result"), ToolCallID: ev.Tool.CallID,
			Content: str(ev.Tool.Output), Role: "tool"})
	case chat.EventStep:
		e.closeText()
		e.closeReasoning()
		if ev.Step == nil {
			return false
		}
		if e.step > 0 {
			e.emit(event{Type: "STEP_FINISHED", StepName: stepName(e.step)})
			e.step = 0
		}
		if ev.Step.Continues {
			e.step = ev.Step.Number + 1
			e.emit(event{Type: "STEP_STARTED", StepName: stepName(e.step)})
		}
	case chat.EventSource:
		if ev.Source == nil {
			return false
		}
		e.emit(event{Type: "CUSTOM", Name: "source", Value: ev.Source})
	case chat.EventApprovalRequested:
		if ev.Approval == nil {
			return false
		}
		in := interrupt{
			ID:         Interrupt{Request: ev.RequestID, Seq: ev.Seq, Call: ev.Approval.CallID}.ID(),
			Reason:     "tool_approval",
			Message:    "approve the call of " + ev.Approval.Tool,
			ToolCallID: ev.Approval.CallID,
			ExpiresAt:  ev.Approval.Expires,
		}
		meta, _ := json.Marshal(map[string]any{"tool": ev.Approval.Tool, "input": chat.JSONValue(ev.Approval.Input), "why": ev.Approval.Reason})
		in.Metadata = meta
		e.finish(&outcome{Type: "interrupt", Interrupts: []interrupt{in}}, nil, "")
		return true
	case chat.EventRestart:
		e.restart(ev)
	case chat.EventEnd:
		e.finish(&outcome{Type: "success"}, ev.Usage, ev.Model)
		return true
	case chat.EventCancelled:
		e.finish(&outcome{Type: "cancelled"}, ev.Usage, ev.Model)
		return true
	case chat.EventError:
		code, msg := chat.CodeInternal, "the answer failed"
		if ev.Error != nil {
			code, msg = ev.Error.Code, ev.Error.Message
		}
		e.emit(runError(code, msg))
		return true
	case chat.EventResync:
		e.emit(runError(chat.CodeUnavailable, "the history no longer reaches this run: reload the conversation"))
		return true
	}
	return false
}

// restart takes back what an attempt that died showed: no AG-UI event
// takes back a message, so what is open is closed and a MESSAGES_SNAPSHOT
// gives the client its messages as they were before the answer (the run's
// input without the answer's own, whose ids begin with its request id);
// the new attempt's messages get new ids, and a CUSTOM event says so.
func (e *encoder) restart(ev *chat.Event) {
	e.closeAll()
	e.tools, e.names, e.calls = nil, nil, nil
	e.emit(event{Type: "MESSAGES_SNAPSHOT", Messages: e.before(ev.RequestID)})
	e.emit(event{Type: "CUSTOM", Name: "restart", Value: map[string]string{"requestId": ev.RequestID}})
}

// before is the client's history without the messages of the answer to
// request.
func (e *encoder) before(request string) []json.RawMessage {
	kept := make([]json.RawMessage, 0, len(e.history))
	for _, raw := range e.history {
		var m struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(raw, &m) == nil && strings.HasPrefix(m.ID, request+"-") {
			continue
		}
		kept = append(kept, raw)
	}
	return kept
}

func (e *encoder) startTool(ev *chat.Event, call, name string) {
	if e.tools == nil {
		e.tools, e.names = make(map[string]int), make(map[string]string)
	}
	e.tools[call] = 1
	e.names[call] = name
	e.calls = append(e.calls, call)
	// The call's message is named as the answer's own, so a restart can
	// take it back.
	e.emit(event{Type: "TOOL_CALL_START", ToolCallID: call, ToolCallName: name, ParentMessageID: id(ev, "call")})
}

func runError(code, message string) event {
	return event{Type: "RUN_ERROR", Message: message, Code: code}
}

// Fail implements stream.Encoder: RUN_ERROR, which may end a run whatever
// is open.
func (e *encoder) Fail(b []byte, code, message string) []byte {
	return appendEvent(b, runError(code, message))
}
