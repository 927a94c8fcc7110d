package aisdk

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// The conformance table: an answer's events in, the UI message stream's
// frames out, as the `ai` package's uiMessageChunkSchema reads them.
func TestChunks(t *testing.T) {
	start := chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r", Model: "m"}
	tool := func(typ chat.EventType, idx int, te chat.ToolEvent, msg string) chat.Event {
		return chat.Event{Type: typ, RequestID: "r", Index: idx, Tool: &te, Message: msg}
	}
	tests := []struct {
		name   string
		events []chat.Event
		want   []string // frames, without "data: " and the blank line
		done   bool
	}{{
		name: "text answer",
		events: []chat.Event{start,
			{Type: chat.EventDelta, RequestID: "r", Index: 1, Message: "Hel"},
			{Type: chat.EventDelta, RequestID: "r", Index: 2, Message: "lo"},
			{Type: chat.EventEnd, SessionID: "s", RequestID: "r", Index: 3, StopReason: "end_turn", Model: "m", Usage: &chat.Usage{InputTokens: 2, OutputTokens: 3, TotalTokens: 5}, TTFTMillis: 7},
		},
		want: []string{
			`{"type":"start","messageId":"r","messageMetadata":{"sessionId":"s","requestId":"r","model":"m"}}`,
			`{"type":"start-step"}`,
			`{"type":"text-start","id":"text-1"}`,
			`{"type":"text-delta","id":"text-1","delta":"Hel"}`,
			`{"type":"text-delta","id":"text-1","delta":"lo"}`,
			`{"type":"text-end","id":"text-1"}`,
			`{"type":"finish-step"}`,
			`{"type":"finish","finishReason":"stop","messageMetadata":{"sessionId":"s","requestId":"r","model":"m","status":"COMPLETE","stopReason":"end_turn","usage":{"inputTokens":2,"outputTokens":3,"totalTokens":5},"ttftMs":7}}`,
			`[DONE]`,
		},
		done: true,
	}, {
		name: "agent run",
		events: []chat.Event{start,
			{Type: chat.EventReasoning, RequestID: "r", Index: 1, Message: "think"},
			tool(chat.EventToolCallStart, 2, chat.ToolEvent{CallID: "c1", Name: "calculator"}, ""),
			tool(chat.EventToolCallDelta, 3, chat.ToolEvent{CallID: "c1"}, `{"expression":`),
			tool(chat.EventToolCallDelta, 4, chat.ToolEvent{CallID: "c1"}, `"6*7"}`),
			tool(chat.EventToolCall, 5, chat.ToolEvent{CallID: "c1", Name: "calculator", Input: json.RawMessage(`{"expression":"6*7"}`)}, ""),
			tool(chat.EventToolCall, 6, chat.ToolEvent{CallID: "c2", Name: "broken", Input: json.RawMessage(`{"a":`)}, ""),
			{Type: chat.EventStep, RequestID: "r", Index: 7, Step: &chat.StepInfo{Number: 1, Reason: "tool_use", Continues: true}},
			tool(chat.EventToolResult, 8, chat.ToolEvent{CallID: "c1", Name: "calculator", Output: "42"}, ""),
			tool(chat.EventToolResult, 9, chat.ToolEvent{CallID: "c2", Output: "no such tool", IsError: true}, ""),
			{Type: chat.EventSource, RequestID: "r", Index: 10, Source: &chat.Source{Title: "Go", URL: "https://go.dev"}},
			{Type: chat.EventSource, RequestID: "r", Index: 11, Source: &chat.Source{Text: "a passage"}},
			{Type: chat.EventDelta, RequestID: "r", Index: 12, Message: "42"},
			{Type: chat.EventStep, RequestID: "r", Index: 13, Step: &chat.StepInfo{Number: 2, Reason: "end_turn"}},
			{Type: chat.EventEnd, RequestID: "r", Index: 14, StopReason: "end_turn"},
		},
		want: []string{
			`{"type":"start","messageId":"r","messageMetadata":{"sessionId":"s","requestId":"r","model":"m"}}`,
			`{"type":"start-step"}`,
			`{"type":"reasoning-start","id":"reasoning-1"}`,
			`{"type":"reasoning-delta","id":"reasoning-1","delta":"think"}`,
			`{"type":"reasoning-end","id":"reasoning-1"}`,
			`{"type":"tool-input-start","toolCallId":"c1","toolName":"calculator"}`,
			`{"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"expression\":"}`,
			`{"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"\"6*7\"}"}`,
			`{"type":"tool-input-available","toolCallId":"c1","toolName":"calculator","input":{"expression":"6*7"}}`,
			`{"type":"tool-input-available","toolCallId":"c2","toolName":"broken","input":"{\"a\":"}`,
			`{"type":"finish-step"}`,
			`{"type":"tool-output-available","toolCallId":"c1","output":"42"}`,
			`{"type":"tool-output-error","toolCallId":"c2","errorText":"no such tool"}`,
			`{"type":"start-step"}`,
			`{"type":"source-url","sourceId":"source-4","url":"https://go.dev","title":"Go"}`,
			`{"type":"source-document","sourceId":"source-5","title":"source 2","mediaType":"text/plain"}`,
			`{"type":"text-start","id":"text-6"}`,
			`{"type":"text-delta","id":"text-6","delta":"42"}`,
			`{"type":"text-end","id":"text-6"}`,
			`{"type":"finish-step"}`,
			`{"type":"finish","finishReason":"stop","messageMetadata":{"requestId":"r","status":"COMPLETE","stopReason":"end_turn"}}`,
			`[DONE]`,
		},
		done: true,
	}, {
		name: "error",
		events: []chat.Event{start,
			{Type: chat.EventDelta, RequestID: "r", Index: 1, Message: "Hi"},
			{Type: chat.EventError, RequestID: "r", Index: 2, Error: &chat.StreamError{Code: chat.CodeProvider, Message: "the model failed"}},
		},
		want: []string{
			`{"type":"start","messageId":"r","messageMetadata":{"sessionId":"s","requestId":"r","model":"m"}}`,
			`{"type":"start-step"}`,
			`{"type":"text-start","id":"text-1"}`,
			`{"type":"text-delta","id":"text-1","delta":"Hi"}`,
			`{"type":"text-end","id":"text-1"}`,
			`{"type":"finish-step"}`,
			`{"type":"error","errorText":"PROVIDER_ERROR: the model failed"}`,
			`{"type":"finish","finishReason":"error","messageMetadata":{"requestId":"r","status":"ERROR"}}`,
			`[DONE]`,
		},
		done: true,
	}, {
		name: "cancelled",
		events: []chat.Event{start,
			{Type: chat.EventReasoning, RequestID: "r", Index: 1, Message: "hm"},
			{Type: chat.EventCancelled, RequestID: "r", Index: 2},
		},
		want: []string{
			`{"type":"start","messageId":"r","messageMetadata":{"sessionId":"s","requestId":"r","model":"m"}}`,
			`{"type":"start-step"}`,
			`{"type":"reasoning-start","id":"reasoning-1"}`,
			`{"type":"reasoning-delta","id":"reasoning-1","delta":"hm"}`,
			`{"type":"reasoning-end","id":"reasoning-1"}`,
			`{"type":"finish-step"}`,
			`{"type":"message-metadata","messageMetadata":{"requestId":"r","status":"CANCELLED"}}`,
			`{"type":"abort","reason":"cancelled"}`,
			`[DONE]`,
		},
		done: true,
	}, {
		name: "restart replaces the text shown of the step in flight",
		events: []chat.Event{start,
			{Type: chat.EventDelta, RequestID: "r", Index: 1, Message: "Hel"},
			{Type: chat.EventRestart, RequestID: "r", Index: 0},
			start,
			{Type: chat.EventDelta, RequestID: "r", Index: 1, Message: "Hello"},
		},
		want: []string{
			`{"type":"start","messageId":"r","messageMetadata":{"sessionId":"s","requestId":"r","model":"m"}}`,
			`{"type":"start-step"}`,
			`{"type":"text-start","id":"text-1"}`,
			`{"type":"text-delta","id":"text-1","delta":"Hel"}`,
			`{"type":"reset-step"}`,
			`{"type":"text-start","id":"text-1"}`,
			`{"type":"text-delta","id":"text-1","delta":"Hello"}`,
		},
	}, {
		name: "approval asked",
		events: []chat.Event{
			{Type: chat.EventApprovalRequested, RequestID: "r", Index: 4, Approval: &chat.ApprovalInfo{CallID: "c1", Tool: "calculator"}},
			{Type: chat.EventApproval, RequestID: "r", Index: 5, Approval: &chat.ApprovalInfo{CallID: "c1", Approved: true}},
		},
		want: []string{`{"type":"tool-approval-request","toolCallId":"c1","approvalId":"c1"}`},
	}, {
		name:   "history gone",
		events: []chat.Event{{Type: chat.EventResync}},
		want: []string{
			`{"type":"error","errorText":"UNAVAILABLE: the history no longer reaches this answer: reload the conversation"}`,
			`[DONE]`,
		},
		done: true,
	}, {
		name: "a delta of a tool call never started is dropped",
		events: []chat.Event{
			tool(chat.EventToolCallDelta, 3, chat.ToolEvent{CallID: "c9"}, `{}`),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e encoder
			var out []byte
			done := false
			for i := range tt.events {
				if done {
					t.Fatalf("event %d after the stream was done", i)
				}
				out, done = e.Event(out, &tt.events[i])
			}
			if done != tt.done {
				t.Errorf("done = %v, want %v", done, tt.done)
			}
			got := sseFrames(t, out)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("frames:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// sseFrames splits a stream into its data lines, checking the SSE framing.
func sseFrames(t *testing.T, out []byte) []string {
	t.Helper()
	var got []string
	for _, f := range strings.SplitAfter(string(out), "\n\n") {
		if f == "" {
			continue
		}
		data, ok := strings.CutPrefix(f, "data: ")
		if !ok || !strings.HasSuffix(data, "\n\n") || strings.Count(data, "\n") != 2 {
			t.Fatalf("not one SSE data line: %q", f)
		}
		got = append(got, strings.TrimSuffix(data, "\n\n"))
	}
	return got
}

func TestFailEndsOpenParts(t *testing.T) {
	var e encoder
	out, _ := e.Event(nil, &chat.Event{Type: chat.EventStart, RequestID: "r"})
	out, _ = e.Event(out, &chat.Event{Type: chat.EventDelta, RequestID: "r", Index: 1, Message: "Hi"})
	out = e.Fail(out[:0], chat.CodeUnauthenticated, "the token expired")
	got := strings.Join(sseFrames(t, out), "\n")
	want := `{"type":"text-end","id":"text-1"}` + "\n" + `{"type":"finish-step"}` + "\n" +
		`{"type":"error","errorText":"UNAUTHENTICATED: the token expired"}` + "\n[DONE]"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
