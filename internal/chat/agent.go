package chat

import (
	"encoding/json"
	"time"
)

// An agent run is an answer in steps: the model reasons, asks for tools,
// reads their results and goes on until it stops. This file is its contract:
// what a provider streams (Part), what a model is given back on the next
// call (Block), the tools it may use (ToolSpec) and the typed events a
// subscriber who opts in sees of it.

// PartKind says what a piece of a model's streamed output is.
type PartKind uint8

// Kinds of streamed output.
const (
	// PartText is answer text (Text).
	PartText PartKind = iota
	// PartReasoning is reasoning text (Text), shown folded, never as the
	// answer.
	PartReasoning
	// PartSignature is the provider's signature of the reasoning so far
	// (Text, byte-exact): stored and sent back on the next call, never
	// shown.
	PartSignature
	// PartRedacted is reasoning the provider returns encrypted (Data,
	// byte-exact): stored and sent back, never shown.
	PartRedacted
	// PartToolStart opens a tool call (CallID, Name).
	PartToolStart
	// PartToolDelta is a fragment of a tool call's JSON input (CallID, Text).
	PartToolDelta
	// PartToolEnd says a tool call's input is complete (CallID). A provider
	// that has no such signal may omit it: every call still open ends with
	// the stream.
	PartToolEnd
	// PartSource is a citation the answer rests on (Source).
	PartSource
)

// Part is one piece of a model's streamed output. It is passed by value and
// allocates nothing of its own.
type Part struct {
	Kind   PartKind
	Text   string
	CallID string
	Name   string
	Data   []byte
	Source *Source
}

// TextPart is answer text.
func TextPart(s string) Part { return Part{Kind: PartText, Text: s} }

// Source is a citation: where a piece of the answer comes from.
type Source struct {
	Title string `json:"title,omitempty"`
	URL   string `json:"url,omitempty"`
	// Text is the cited passage, when the provider gives it.
	Text string `json:"text,omitempty"`
}

// ToolSpec is a tool as a model is offered it.
type ToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// InputSchema is the JSON Schema of the tool's input (an object).
	InputSchema json.RawMessage `json:"inputSchema,omitempty"`
}

// BlockKind says what a block of a message is.
type BlockKind string

// Kinds of message content.
const (
	BlockText       BlockKind = "text"
	BlockReasoning  BlockKind = "reasoning"
	BlockRedacted   BlockKind = "redacted_reasoning"
	BlockToolCall   BlockKind = "tool_call"
	BlockToolResult BlockKind = "tool_result"
	// BlockSource is a source the model cited: kept so a resumed run shows
	// it again; providers are not sent it back.
	BlockSource BlockKind = "source"
)

// Block is one piece of a message's content, as stored and as given back to
// a model: an assistant's text, reasoning (with its signature) and tool
// calls; a user's tool results.
type Block struct {
	Kind BlockKind `json:"kind"`
	// Text is the text, the reasoning text, or a tool result's output.
	Text string `json:"text,omitempty"`
	// Signature is a reasoning block's provider signature, byte-exact.
	Signature string `json:"signature,omitempty"`
	// Data is redacted reasoning, byte-exact.
	Data []byte `json:"data,omitempty"`
	// CallID and Name identify a tool call, or the call a result answers.
	CallID string `json:"callId,omitempty"`
	Name   string `json:"name,omitempty"`
	// Input is a tool call's complete JSON input.
	Input json.RawMessage `json:"input,omitempty"`
	// IsError marks a tool result that is the tool's failure.
	IsError bool `json:"isError,omitempty"`
	// Truncated marks a tool result cut to the output cap.
	Truncated bool `json:"truncated,omitempty"`
	// DurationMillis is how long a tool call ran, in milliseconds to the
	// microsecond.
	DurationMillis float64 `json:"durationMs,omitempty"`
	// Source is a cited source (BlockSource).
	Source *Source `json:"source,omitempty"`
}

// ToolEvent is what a TOOL_CALL_START, TOOL_CALL_DELTA, TOOL_CALL or
// TOOL_RESULT event says of one tool call.
type ToolEvent struct {
	CallID string `json:"callId"`
	Name   string `json:"name,omitempty"`
	// Input is the complete JSON input (TOOL_CALL).
	Input json.RawMessage `json:"input,omitempty"`
	// Output is the result (TOOL_RESULT), cut to the output cap.
	Output    string `json:"output,omitempty"`
	IsError   bool   `json:"isError,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// DurationMillis is how long the call ran (TOOL_RESULT), in
	// milliseconds to the microsecond.
	DurationMillis float64 `json:"durationMs,omitempty"`
}

// StepInfo is what a STEP event says: a model call of the run ended.
type StepInfo struct {
	// Number counts the run's model calls from 1.
	Number int `json:"number"`
	// Reason is why the model stopped (the provider's stop reason).
	Reason string `json:"reason,omitempty"`
	// Continues is true when the run goes on with tool results.
	Continues bool `json:"continues"`
}

// ApprovalInfo is what an APPROVAL_REQUESTED or APPROVAL event says.
type ApprovalInfo struct {
	CallID string          `json:"callId"`
	Tool   string          `json:"tool,omitempty"`
	Input  json.RawMessage `json:"input,omitempty"`
	// Approved and Reason are the answer (APPROVAL).
	Approved bool   `json:"approved,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Expires is when an unanswered request becomes a denial (RFC 3339).
	Expires string `json:"expires,omitempty"`
}

// Agent event types: a subscriber sees them only when it asks for them; a
// client of the AWS sample's contract sees text between #START_STREAM# and
// #END_STREAM#, as ever.
const (
	EventReasoning         EventType = "REASONING"
	EventToolCallStart     EventType = "TOOL_CALL_START"
	EventToolCallDelta     EventType = "TOOL_CALL_DELTA"
	EventToolCall          EventType = "TOOL_CALL"
	EventToolResult        EventType = "TOOL_RESULT"
	EventStep              EventType = "STEP"
	EventSource            EventType = "SOURCE"
	EventApprovalRequested EventType = "APPROVAL_REQUESTED"
	EventApproval          EventType = "APPROVAL"
)

// Agent reports whether t is an agent event, which only subscribers that
// opt in are sent.
func (t EventType) Agent() bool {
	switch t {
	case EventReasoning, EventToolCallStart, EventToolCallDelta, EventToolCall, EventToolResult,
		EventStep, EventSource, EventApprovalRequested, EventApproval:
		return true
	}
	return false
}

// ApprovalRecord is a tool call's approval as stored: requested, then
// answered once.
type ApprovalRecord struct {
	ApprovalInfo
	Answered bool `json:"answered,omitempty"`
	// By is the principal who answered.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at,omitzero"`
}

// ErrApprovalNotPending says no approval of that call is awaited.
var ErrApprovalNotPending = &Error{Code: CodeApprovalNotPending, Message: "no approval of this tool call is awaited"}

// ErrAlreadyAnswered says the approval was answered before.
var ErrAlreadyAnswered = &Error{Code: CodeAlreadyAnswered, Message: "this approval was answered already"}

// JSONValue is a tool call's input as a JSON value for a protocol that
// carries it parsed: itself when it is valid JSON, as a JSON string when it
// is not (a model may stream broken input), {} when empty.
func JSONValue(in json.RawMessage) json.RawMessage {
	if len(in) == 0 {
		return json.RawMessage("{}")
	}
	if json.Valid(in) {
		return in
	}
	s, _ := json.Marshal(string(in))
	return s
}
