package agui

import (
	"encoding/json"
	"strconv"

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
	Type            string          `json:"type"`
	ThreadID        string          `json:"threadId,omitempty"`
	RunID           string          `json:"runId,omitempty"`
	MessageID       string          `json:"messageId,omitempty"`
	Role            string          `json:"role,omitempty"`
	Delta           *string         `json:"delta,omitempty"`
	ToolCallID      string          `json:"toolCallId,omitempty"`
	ToolCallName    string          `json:"toolCallName,omitempty"`
	Content         *string         `json:"content,omitempty"`
	StepName        string          `json:"stepName,omitempty"`
	Name            string          `json:"name,omitempty"`
	Value           any             `json:"value,omitempty"`
	Message         string          `json:"message,omitempty"`
	Code            string          `json:"code,omitempty"`
	Outcome         *outcome        `json:"outcome,omitempty"`
	Usage           []usage         `json:"usage,omitempty"`
	Messages        []message       `json:"messages,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	ParentMessageID string          `json:"parentMessageId,omitempty"`
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
	text, reasoning string         // the open message ids, "" for none
	step            int            // the open step's number, 0 for none
	tools           map[string]int // tool calls: 1 started, 2 ended
	calls           []string       // the tool calls in the order they started
}

func newEncoder(thread, run string) *encoder { return &encoder{thread: thread, run: run} }

func appendEvent(b []byte, ev event) []byte { return stream.AppendData(b, ev) }

func str(s string) *string { return &s }

// Started appends RUN_STARTED, which opens every stream.
func (e *encoder) Started(b []byte) []byte {
	return appendEvent(b, event{Type: "RUN_STARTED", ThreadID: e.thread, RunID: e.run})
}

func id(ev *chat.Event, kind string) string {
	return ev.RequestID + "-" + strconv.FormatUint(ev.Attempt, 10) + "-" + kind + "-" + strconv.Itoa(ev.Index)
}

// closeText ends the open text message.
func (e *encoder) closeText(b []byte) []byte {
	if e.text != "" {
		b = appendEvent(b, event{Type: "TEXT_MESSAGE_END", MessageID: e.text})
		e.text = ""
	}
	return b
}

// closeReasoning ends the open reasoning message and its span.
func (e *encoder) closeReasoning(b []byte) []byte {
	if e.reasoning != "" {
		b = appendEvent(b, event{Type: "REASONING_MESSAGE_END", MessageID: e.reasoning})
		b = appendEvent(b, event{Type: "REASONING_END", MessageID: e.reasoning})
		e.reasoning = ""
	}
	return b
}

// closeAll ends every message, tool call and the step.
func (e *encoder) closeAll(b []byte) []byte {
	b = e.closeReasoning(e.closeText(b))
	for _, call := range e.calls {
		if e.tools[call] == 1 {
			b = appendEvent(b, event{Type: "TOOL_CALL_END", ToolCallID: call})
			e.tools[call] = 2
		}
	}
	if e.step > 0 {
		b = appendEvent(b, event{Type: "STEP_FINISHED", StepName: stepName(e.step)})
		e.step = 0
	}
	return b
}

func stepName(n int) string { return "step " + strconv.Itoa(n) }

// finished appends RUN_FINISHED with o, after closing what is open.
func (e *encoder) finished(b []byte, o *outcome, u *chat.Usage, model string) []byte {
	b = e.closeAll(b)
	ev := event{Type: "RUN_FINISHED", ThreadID: e.thread, RunID: e.run, Outcome: o}
	if u != nil {
		ev.Usage = []usage{{Model: model, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens,
			ReasoningTokens: u.ReasoningTokens, CachedInputTokens: u.CacheReadTokens, CacheWriteInputTokens: u.CacheWriteTokens}}
	}
	return appendEvent(b, ev)
}

// Event implements stream.Encoder.
func (e *encoder) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	switch ev.Type {
	case chat.EventStart:
		e.step = 1
		return appendEvent(b, event{Type: "STEP_STARTED", StepName: stepName(1)}), false
	case chat.EventDelta:
		if ev.Message == "" {
			return b, false
		}
		b = e.closeReasoning(b)
		if e.text == "" {
			e.text = id(ev, "text")
			b = appendEvent(b, event{Type: "TEXT_MESSAGE_START", MessageID: e.text, Role: "assistant"})
		}
		return appendEvent(b, event{Type: "TEXT_MESSAGE_CONTENT", MessageID: e.text, Delta: str(ev.Message)}), false
	case chat.EventReasoning:
		if ev.Message == "" {
			return b, false
		}
		b = e.closeText(b)
		if e.reasoning == "" {
			e.reasoning = id(ev, "reasoning")
			b = appendEvent(b, event{Type: "REASONING_START", MessageID: e.reasoning})
			b = appendEvent(b, event{Type: "REASONING_MESSAGE_START", MessageID: e.reasoning, Role: "reasoning"})
		}
		return appendEvent(b, event{Type: "REASONING_MESSAGE_CONTENT", MessageID: e.reasoning, Delta: str(ev.Message)}), false
	case chat.EventToolCallStart:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] != 0 {
			return b, false
		}
		return e.startTool(e.closeReasoning(e.closeText(b)), ev.Tool.CallID, ev.Tool.Name), false
	case chat.EventToolCallDelta:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] != 1 {
			return b, false
		}
		return appendEvent(b, event{Type: "TOOL_CALL_ARGS", ToolCallID: ev.Tool.CallID, Delta: str(ev.Message)}), false
	case chat.EventToolCall:
		if ev.Tool == nil || e.tools[ev.Tool.CallID] == 2 {
			return b, false
		}
		if e.tools[ev.Tool.CallID] == 0 {
			// No start was seen (a resumed run): the whole input at once.
			b = e.startTool(e.closeReasoning(e.closeText(b)), ev.Tool.CallID, ev.Tool.Name)
			b = appendEvent(b, event{Type: "TOOL_CALL_ARGS", ToolCallID: ev.Tool.CallID, Delta: str(string(ev.Tool.Input))})
		}
		e.tools[ev.Tool.CallID] = 2
		return appendEvent(b, event{Type: "TOOL_CALL_END", ToolCallID: ev.Tool.CallID}), false
	case chat.EventToolResult:
		if ev.Tool == nil {
			return b, false
		}
		return appendEvent(b, event{Type: "TOOL_CALL_RESULT", MessageID: id(ev, "result"), ToolCallID: ev.Tool.CallID,
			Content: str(ev.Tool.Output), Role: "tool"}), false
	case chat.EventStep:
		b = e.closeReasoning(e.closeText(b))
		if ev.Step == nil {
			return b, false
		}
		if e.step > 0 {
			b = appendEvent(b, event{Type: "STEP_FINISHED", StepName: stepName(e.step)})
			e.step = 0
		}
		if ev.Step.Continues {
			e.step = ev.Step.Number + 1
			b = appendEvent(b, event{Type: "STEP_STARTED", StepName: stepName(e.step)})
		}
		return b, false
	case chat.EventSource:
		if ev.Source == nil {
			return b, false
		}
		return appendEvent(b, event{Type: "CUSTOM", Name: "source", Value: ev.Source}), false
	case chat.EventApprovalRequested:
		if ev.Approval == nil {
			return b, false
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
		return e.finished(b, &outcome{Type: "interrupt", Interrupts: []interrupt{in}}, nil, ""), true
	case chat.EventRestart:
		// No AG-UI event takes back what was shown: the new attempt's
		// messages get new ids, and a CUSTOM event says so.
		b = e.closeAll(b)
		e.tools, e.calls = nil, nil
		return appendEvent(b, event{Type: "CUSTOM", Name: "restart", Value: map[string]string{"requestId": ev.RequestID}}), false
	case chat.EventEnd:
		return e.finished(b, &outcome{Type: "success"}, ev.Usage, ev.Model), true
	case chat.EventCancelled:
		return e.finished(b, &outcome{Type: "cancelled"}, ev.Usage, ev.Model), true
	case chat.EventError:
		code, msg := chat.CodeInternal, "the answer failed"
		if ev.Error != nil {
			code, msg = ev.Error.Code, ev.Error.Message
		}
		return e.Fail(b, code, msg), true
	case chat.EventResync:
		return e.Fail(b, chat.CodeUnavailable, "the history no longer reaches this run: reload the conversation"), true
	}
	return b, false
}

func (e *encoder) startTool(b []byte, call, name string) []byte {
	if e.tools == nil {
		e.tools = make(map[string]int)
	}
	e.tools[call] = 1
	e.calls = append(e.calls, call)
	return appendEvent(b, event{Type: "TOOL_CALL_START", ToolCallID: call, ToolCallName: name})
}

// Fail implements stream.Encoder: RUN_ERROR, which may end a run whatever
// is open.
func (e *encoder) Fail(b []byte, code, message string) []byte {
	return appendEvent(b, event{Type: "RUN_ERROR", Message: message, Code: code})
}
