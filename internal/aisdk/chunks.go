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

// encoder frames one answer's events as UI message stream chunks, keeping
// which text or reasoning part is open. Part ids are the index of the
// event that opened them, so a replay from START names them the same.
type encoder struct {
	text, reasoning string          // the open parts' ids, "" for none
	inStep          bool            // a start-step was sent and not finished
	tools           map[string]bool // tool calls whose input has started
	sources         int
}

// done is the end of every stream.
var done = []byte("data: [DONE]\n\n")

func appendChunk(b []byte, c chunk) []byte { return stream.AppendData(b, c) }

func str(s string) *string { return &s }

// closeParts ends the open text and reasoning parts.
func (e *encoder) closeParts(b []byte) []byte {
	if e.text != "" {
		b = appendChunk(b, chunk{Type: "text-end", ID: e.text})
		e.text = ""
	}
	if e.reasoning != "" {
		b = appendChunk(b, chunk{Type: "reasoning-end", ID: e.reasoning})
		e.reasoning = ""
	}
	return b
}

// finishStep ends the open parts and the step.
func (e *encoder) finishStep(b []byte) []byte {
	b = e.closeParts(b)
	if e.inStep {
		b = appendChunk(b, chunk{Type: "finish-step"})
		e.inStep = false
	}
	return b
}

// Event implements stream.Encoder.
func (e *encoder) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	switch ev.Type {
	case chat.EventStart:
		b = appendChunk(b, chunk{Type: "start", MessageID: ev.RequestID, MessageMetadata: &metadata{SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model}})
		e.inStep = true
		return appendChunk(b, chunk{Type: "start-step"}), false
	case chat.EventDelta:
		return e.delta(b, "text", &e.text, &e.reasoning, "reasoning", ev), false
	case chat.EventReasoning:
		return e.delta(b, "reasoning", &e.reasoning, &e.text, "text", ev), false
	case chat.EventToolCallStart:
		if ev.Tool == nil {
			return b, false
		}
		b = e.closeParts(b)
		e.startTool(ev.Tool.CallID)
		return appendChunk(b, chunk{Type: "tool-input-start", ToolCallID: ev.Tool.CallID, ToolName: ev.Tool.Name}), false
	case chat.EventToolCallDelta:
		if ev.Tool == nil || !e.tools[ev.Tool.CallID] {
			return b, false
		}
		return appendChunk(b, chunk{Type: "tool-input-delta", ToolCallID: ev.Tool.CallID, InputTextDelta: str(ev.Message)}), false
	case chat.EventToolCall:
		if ev.Tool == nil {
			return b, false
		}
		b = e.closeParts(b)
		e.startTool(ev.Tool.CallID)
		return appendChunk(b, chunk{Type: "tool-input-available", ToolCallID: ev.Tool.CallID, ToolName: ev.Tool.Name, Input: chat.JSONValue(ev.Tool.Input)}), false
	case chat.EventToolResult:
		if ev.Tool == nil {
			return b, false
		}
		if ev.Tool.IsError {
			return appendChunk(b, chunk{Type: "tool-output-error", ToolCallID: ev.Tool.CallID, ErrorText: ev.Tool.Output}), false
		}
		return appendChunk(b, chunk{Type: "tool-output-available", ToolCallID: ev.Tool.CallID, Output: str(ev.Tool.Output)}), false
	case chat.EventApprovalRequested:
		if ev.Approval == nil {
			return b, false
		}
		return appendChunk(b, chunk{Type: "tool-approval-request", ApprovalID: ev.Approval.CallID, ToolCallID: ev.Approval.CallID}), false
	case chat.EventStep:
		b = e.finishStep(b)
		if ev.Step != nil && ev.Step.Continues {
			e.inStep = true
			b = appendChunk(b, chunk{Type: "start-step"})
		}
		return b, false
	case chat.EventSource:
		if ev.Source == nil {
			return b, false
		}
		e.sources++
		id := "source-" + strconv.Itoa(ev.Index)
		if ev.Source.URL != "" {
			return appendChunk(b, chunk{Type: "source-url", SourceID: id, URL: ev.Source.URL, Title: ev.Source.Title}), false
		}
		title := ev.Source.Title
		if title == "" {
			title = "source " + strconv.Itoa(e.sources)
		}
		return appendChunk(b, chunk{Type: "source-document", SourceID: id, MediaType: "text/plain", Title: title}), false
	case chat.EventRestart:
		// A new attempt starts the answer over: drop what this step showed.
		b = e.closeParts(b)
		e.tools = nil
		b = appendChunk(b, chunk{Type: "reset-step"})
		if !e.inStep {
			e.inStep = true
			b = appendChunk(b, chunk{Type: "start-step"})
		}
		return b, false
	case chat.EventEnd:
		b = e.finishStep(b)
		b = appendChunk(b, chunk{Type: "finish", FinishReason: finishReason(ev.StopReason), MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusComplete),
			StopReason: ev.StopReason, Usage: ev.Usage, TTFTMillis: ev.TTFTMillis,
		}})
		return append(b, done...), true
	case chat.EventError:
		code, msg := chat.CodeInternal, "the answer failed"
		if ev.Error != nil {
			code, msg = ev.Error.Code, ev.Error.Message
		}
		b = e.finishStep(b)
		b = appendChunk(b, chunk{Type: "error", ErrorText: code + ": " + msg})
		b = appendChunk(b, chunk{Type: "finish", FinishReason: "error", MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusError), Usage: ev.Usage,
		}})
		return append(b, done...), true
	case chat.EventCancelled:
		b = e.finishStep(b)
		b = appendChunk(b, chunk{Type: "message-metadata", MessageMetadata: &metadata{
			SessionID: ev.SessionID, RequestID: ev.RequestID, Model: ev.Model, Status: string(chat.StatusCancelled), Usage: ev.Usage,
		}})
		b = appendChunk(b, chunk{Type: "abort", Reason: "cancelled"})
		return append(b, done...), true
	case chat.EventResync:
		return e.Fail(b, chat.CodeUnavailable, "the history no longer reaches this answer: reload the conversation"), true
	}
	return b, false
}

// delta appends a text or reasoning delta (kind) to the open part of its
// kind (*open), ending the open part of the other kind first.
func (e *encoder) delta(b []byte, kind string, open, other *string, otherKind string, ev *chat.Event) []byte {
	if ev.Message == "" {
		return b
	}
	if *other != "" {
		b = appendChunk(b, chunk{Type: otherKind + "-end", ID: *other})
		*other = ""
	}
	if *open == "" {
		*open = kind + "-" + strconv.Itoa(ev.Index)
		b = appendChunk(b, chunk{Type: kind + "-start", ID: *open})
	}
	return appendChunk(b, chunk{Type: kind + "-delta", ID: *open, Delta: str(ev.Message)})
}

// Fail implements stream.Encoder.
func (e *encoder) Fail(b []byte, code, message string) []byte {
	b = e.finishStep(b)
	b = appendChunk(b, chunk{Type: "error", ErrorText: code + ": " + message})
	return append(b, done...)
}

func (e *encoder) startTool(id string) {
	if e.tools == nil {
		e.tools = make(map[string]bool)
	}
	e.tools[id] = true
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
