package aisdk

import (
	"encoding/json"
	"strconv"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/stream"
)

// This file owns the mapping of an answer's events to UI message stream
// chunks (the `ai` package's uiMessageChunkSchema): one table, in
// docs/clients.md, event for chunk.

// chunk is one UI message stream chunk; the fields a type does not use are
// left out.
type chunk struct {
	Type            string          `json:"type"`
	ID              string          `json:"id,omitempty"`
	MessageID       string          `json:"messageId,omitempty"`
	Delta           *string         `json:"delta,omitempty"`
	ToolCallID      string          `json:"toolCallId,omitempty"`
	ToolName        string          `json:"toolName,omitempty"`
	InputTextDelta  *string         `json:"inputTextDelta,omitempty"`
	Input           json.RawMessage `json:"input,omitempty"`
	Output          *string         `json:"output,omitempty"`
	ErrorText       string          `json:"errorText,omitempty"`
	ApprovalID      string          `json:"approvalId,omitempty"`
	SourceID        string          `json:"sourceId,omitempty"`
	URL             string          `json:"url,omitempty"`
	Title           string          `json:"title,omitempty"`
	MediaType       string          `json:"mediaType,omitempty"`
	FinishReason    string          `json:"finishReason,omitempty"`
	Reason          string          `json:"reason,omitempty"`
	MessageMetadata *metadata       `json:"messageMetadata,omitempty"`
}

// metadata is the message metadata we send: which answer, and on its end
// what it cost and why it stopped.
type metadata struct {
	SessionID  string      `json:"sessionId,omitempty"`
	RequestID  string      `json:"requestId"`
	Model      string      `json:"model,omitempty"`
	Status     string      `json:"status,omitempty"`
	StopReason string      `json:"stopReason,omitempty"`
	Usage      *chat.Usage `json:"usage,omitempty"`
	TTFTMillis int64       `json:"ttftMs,omitempty"`
}

// frames turns one answer's events into chunks for one client, keeping
// which text or reasoning part is open. Part ids count the parts the
// answer opened (text-1, reasoning-2, …), so a replay from START names them
// the same, and so does a new attempt that repeats the same parts.
type frames struct {
	text, reasoning string          // the open parts' ids, "" for none
	inStep          bool            // a start-step was sent and not finished
	stepOwed        bool            // the run goes on: start-step before its next part
	tools           map[string]bool // tool calls whose input has started
	parts, sources  int
}

// doneType marks the end of the stream among chunks: it is sent as
// "data: [DONE]".
const doneType = "[DONE]"

// done is the end of every stream.
var done = []byte("data: [DONE]\n\n")

func appendChunk(b []byte, c chunk) []byte {
	if c.Type == doneType {
		return append(b, done...)
	}
	return stream.AppendData(b, c)
}

func str(s string) *string { return &s }

// closeParts ends the open text and reasoning parts.
func (f *frames) closeParts(cs []chunk) []chunk {
	if f.text != "" {
		cs = append(cs, chunk{Type: "text-end", ID: f.text})
		f.text = ""
	}
	if f.reasoning != "" {
		cs = append(cs, chunk{Type: "reasoning-end", ID: f.reasoning})
		f.reasoning = ""
	}
	return cs
}

// finishStep ends the open parts and the step.
func (f *frames) finishStep(cs []chunk) []chunk {
	cs = f.closeParts(cs)
	if f.inStep {
		cs = append(cs, chunk{Type: "finish-step"})
		f.inStep = false
	}
	return cs
}

// newPart starts the step a part belongs to when it is owed, and returns
// the part's id. A step is started by its first part of its own: what
// comes between a finish-step and that part (the results of the step's
// tool calls) belongs to the step that called them, so a client's current
// step is always the one a new attempt may have to replace.
func (f *frames) newPart(cs []chunk, kind string) ([]chunk, string) {
	if f.stepOwed {
		f.stepOwed = false
		f.inStep = true
		cs = append(cs, chunk{Type: "start-step"})
	}
	f.parts++
	return cs, kind + "-" + strconv.Itoa(f.parts)
}

// event appends ev's chunks to cs; done says the answer is over.
func (f *frames) event(cs []chunk, ev *chat.Event) ([]chunk, bool) {
	switch ev.Type {
	case chat.EventStart:
		cs = append(cs, chunk{Type: "start", MessageID: ev.RequestID, MessageMetadata: &metadata{SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model}})
		f.inStep = true
		return append(cs, chunk{Type: "start-step"}), false
	case chat.EventDelta:
		return f.delta(cs, "text", &f.text, &f.reasoning, "reasoning", ev), false
	case chat.EventReasoning:
		return f.delta(cs, "reasoning", &f.reasoning, &f.text, "text", ev), false
	case chat.EventToolCallStart:
		if ev.Tool == nil {
			return cs, false
		}
		cs = f.closeParts(cs)
		cs, _ = f.newPart(cs, "tool")
		f.startTool(ev.Tool.CallID)
		return append(cs, chunk{Type: "tool-input-start", ToolCallID: ev.Tool.CallID, ToolName: ev.Tool.Name}), false
	case chat.EventToolCallDelta:
		if ev.Tool == nil || !f.tools[ev.Tool.CallID] {
			return cs, false
		}
		return append(cs, chunk{Type: "tool-input-delta", ToolCallID: ev.Tool.CallID, InputTextDelta: str(ev.Message)}), false
	case chat.EventToolCall:
		if ev.Tool == nil {
			return cs, false
		}
		cs = f.closeParts(cs)
		if !f.tools[ev.Tool.CallID] {
			cs, _ = f.newPart(cs, "tool")
			f.startTool(ev.Tool.CallID)
		}
		return append(cs, chunk{Type: "tool-input-available", ToolCallID: ev.Tool.CallID, ToolName: ev.Tool.Name, Input: chat.JSONValue(ev.Tool.Input)}), false
	case chat.EventToolResult:
		if ev.Tool == nil {
			return cs, false
		}
		if ev.Tool.IsError {
			return append(cs, chunk{Type: "tool-output-error", ToolCallID: ev.Tool.CallID, ErrorText: ev.Tool.Output}), false
		}
		return append(cs, chunk{Type: "tool-output-available", ToolCallID: ev.Tool.CallID, Output: str(ev.Tool.Output)}), false
	case chat.EventApprovalRequested:
		if ev.Approval == nil {
			return cs, false
		}
		return append(cs, chunk{Type: "tool-approval-request", ApprovalID: ev.Approval.CallID, ToolCallID: ev.Approval.CallID}), false
	case chat.EventStep:
		cs = f.finishStep(cs)
		f.stepOwed = ev.Step != nil && ev.Step.Continues
		return cs, false
	case chat.EventSource:
		if ev.Source == nil {
			return cs, false
		}
		cs = f.closeParts(cs)
		var id string
		cs, id = f.newPart(cs, "source")
		f.sources++
		if ev.Source.URL != "" {
			return append(cs, chunk{Type: "source-url", SourceID: id, URL: ev.Source.URL, Title: ev.Source.Title}), false
		}
		title := ev.Source.Title
		if title == "" {
			title = "source " + strconv.Itoa(f.sources)
		}
		return append(cs, chunk{Type: "source-document", SourceID: id, MediaType: "text/plain", Title: title}), false
	case chat.EventEnd:
		cs = f.finishStep(cs)
		cs = append(cs, chunk{Type: "finish", FinishReason: finishReason(ev.StopReason), MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusComplete),
			StopReason: ev.StopReason, Usage: ev.Usage, TTFTMillis: ev.TTFTMillis,
		}})
		return append(cs, chunk{Type: doneType}), true
	case chat.EventError:
		code, msg := chat.CodeInternal, "the answer failed"
		if ev.Error != nil {
			code, msg = ev.Error.Code, ev.Error.Message
		}
		cs = f.finishStep(cs)
		cs = append(cs, chunk{Type: "error", ErrorText: code + ": " + msg})
		cs = append(cs, chunk{Type: "finish", FinishReason: "error", MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusError), Usage: ev.Usage,
		}})
		return append(cs, chunk{Type: doneType}), true
	case chat.EventCancelled:
		cs = f.finishStep(cs)
		cs = append(cs, chunk{Type: "message-metadata", MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusCancelled), Usage: ev.Usage,
		}})
		cs = append(cs, chunk{Type: "abort", Reason: "cancelled"})
		return append(cs, chunk{Type: doneType}), true
	case chat.EventResync:
		return f.fail(cs, chat.CodeUnavailable, "the history no longer reaches this answer: reload the conversation"), true
	}
	return cs, false
}

// delta appends a text or reasoning delta (kind) to the open part of its
// kind (*open), ending the open part of the other kind first.
func (f *frames) delta(cs []chunk, kind string, open, other *string, otherKind string, ev *chat.Event) []chunk {
	if ev.Message == "" {
		return cs
	}
	if *other != "" {
		cs = append(cs, chunk{Type: otherKind + "-end", ID: *other})
		*other = ""
	}
	if *open == "" {
		cs, *open = f.newPart(cs, kind)
		cs = append(cs, chunk{Type: kind + "-start", ID: *open})
	}
	return append(cs, chunk{Type: kind + "-delta", ID: *open, Delta: str(ev.Message)})
}

// fail appends the chunks that end the stream early with an error.
func (f *frames) fail(cs []chunk, code, message string) []chunk {
	cs = f.finishStep(cs)
	cs = append(cs, chunk{Type: "error", ErrorText: code + ": " + message})
	return append(cs, chunk{Type: doneType})
}

func (f *frames) startTool(id string) {
	if f.tools == nil {
		f.tools = make(map[string]bool)
	}
	f.tools[id] = true
}

// finishReason is the AI SDK's finish reason for a provider's stop reason.
func finishReason(stop string) string {
	switch stop {
	case "end_turn", "stop", "stop_sequence", "":
		return "stop"
	case "max_tokens", "length":
		return "length"
	case "tool_use", "tool_calls", "tool-calls":
		return "tool-calls"
	case "content_filter", "guardrail_intervened", "refusal":
		return "content-filter"
	}
	return "other"
}
