package agui

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// The conformance table: an answer's events in, AG-UI events out, each
// frame one SSE data line.
func TestEvents(t *testing.T) {
	ev := func(typ chat.EventType, idx int, f func(*chat.Event)) chat.Event {
		e := chat.Event{Type: typ, RequestID: "r", Attempt: 1, Index: idx}
		if f != nil {
			f(&e)
		}
		return e
	}
	msg := func(m string) func(*chat.Event) { return func(e *chat.Event) { e.Message = m } }
	tool := func(te chat.ToolEvent, m string) func(*chat.Event) {
		return func(e *chat.Event) { e.Tool, e.Message = &te, m }
	}
	tests := []struct {
		name   string
		events []chat.Event
		want   []string
		done   bool
	}{{
		name: "text",
		events: []chat.Event{ev(chat.EventStart, 0, nil), ev(chat.EventDelta, 1, msg("Hel")), ev(chat.EventDelta, 2, msg("lo")),
			ev(chat.EventEnd, 3, func(e *chat.Event) {
				e.Model, e.Usage = "m", &chat.Usage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3}
			})},
		want: []string{
			`{"type":"STEP_STARTED","stepName":"step 1"}`,
			`{"type":"TEXT_MESSAGE_START","messageId":"r-1-text-1","role":"assistant"}`,
			`{"type":"TEXT_MESSAGE_CONTENT","messageId":"r-1-text-1","delta":"Hel"}`,
			`{"type":"TEXT_MESSAGE_CONTENT","messageId":"r-1-text-1","delta":"lo"}`,
			`{"type":"TEXT_MESSAGE_END","messageId":"r-1-text-1"}`,
			`{"type":"STEP_FINISHED","stepName":"step 1"}`,
			`{"type":"RUN_FINISHED","threadId":"t","runId":"run","outcome":{"type":"success"},"usage":[{"model":"m","inputTokens":1,"outputTokens":2,"totalTokens":3}]}`,
		},
		done: true,
	}, {
		name: "agent run",
		events: []chat.Event{ev(chat.EventStart, 0, nil),
			ev(chat.EventReasoning, 1, msg("think")),
			ev(chat.EventToolCallStart, 2, tool(chat.ToolEvent{CallID: "c1", Name: "calculator"}, "")),
			ev(chat.EventToolCallDelta, 3, tool(chat.ToolEvent{CallID: "c1"}, `{"x":1}`)),
			ev(chat.EventToolCall, 4, tool(chat.ToolEvent{CallID: "c1", Name: "calculator", Input: json.RawMessage(`{"x":1}`)}, "")),
			ev(chat.EventStep, 5, func(e *chat.Event) { e.Step = &chat.StepInfo{Number: 1, Continues: true} }),
			ev(chat.EventToolResult, 6, tool(chat.ToolEvent{CallID: "c1", Output: "42"}, "")),
			ev(chat.EventSource, 7, func(e *chat.Event) { e.Source = &chat.Source{Title: "Go", URL: "https://go.dev"} }),
			ev(chat.EventDelta, 8, msg("42")),
			ev(chat.EventStep, 9, func(e *chat.Event) { e.Step = &chat.StepInfo{Number: 2} }),
			ev(chat.EventEnd, 10, nil)},
		want: []string{
			`{"type":"STEP_STARTED","stepName":"step 1"}`,
			`{"type":"REASONING_START","messageId":"r-1-reasoning-1"}`,
			`{"type":"REASONING_MESSAGE_START","messageId":"r-1-reasoning-1","role":"reasoning"}`,
			`{"type":"REASONING_MESSAGE_CONTENT","messageId":"r-1-reasoning-1","delta":"think"}`,
			`{"type":"REASONING_MESSAGE_END","messageId":"r-1-reasoning-1"}`,
			`{"type":"REASONING_END","messageId":"r-1-reasoning-1"}`,
			`{"type":"TOOL_CALL_START","toolCallId":"c1","toolCallName":"calculator","parentMessageId":"r-1-call-2"}`,
			`{"type":"TOOL_CALL_ARGS","delta":"{\"x\":1}","toolCallId":"c1"}`,
			`{"type":"TOOL_CALL_END","toolCallId":"c1"}`,
			`{"type":"STEP_FINISHED","stepName":"step 1"}`,
			`{"type":"STEP_STARTED","stepName":"step 2"}`,
			`{"type":"TOOL_CALL_RESULT","messageId":"r-1-result-6","role":"tool","toolCallId":"c1","content":"42"}`,
			`{"type":"CUSTOM","name":"source","value":{"title":"Go","url":"https://go.dev"}}`,
			`{"type":"TEXT_MESSAGE_START","messageId":"r-1-text-8","role":"assistant"}`,
			`{"type":"TEXT_MESSAGE_CONTENT","messageId":"r-1-text-8","delta":"42"}`,
			`{"type":"TEXT_MESSAGE_END","messageId":"r-1-text-8"}`,
			`{"type":"STEP_FINISHED","stepName":"step 2"}`,
			`{"type":"RUN_FINISHED","threadId":"t","runId":"run","outcome":{"type":"success"}}`,
		},
		done: true,
	}, {
		name: "an approval ends the run with an interrupt, everything closed",
		events: []chat.Event{ev(chat.EventStart, 0, nil),
			ev(chat.EventToolCallStart, 1, tool(chat.ToolEvent{CallID: "c1", Name: "calculator"}, "")),
			ev(chat.EventApprovalRequested, 2, func(e *chat.Event) {
				e.Seq = 17
				e.Approval = &chat.ApprovalInfo{CallID: "c1", Tool: "calculator", Input: json.RawMessage(`{"x":1}`), Expires: "2030-01-01T00:00:00Z"}
			})},
		want: []string{
			`{"type":"STEP_STARTED","stepName":"step 1"}`,
			`{"type":"TOOL_CALL_START","toolCallId":"c1","toolCallName":"calculator","parentMessageId":"r-1-call-1"}`,
			`{"type":"TOOL_CALL_END","toolCallId":"c1"}`,
			`{"type":"STEP_FINISHED","stepName":"step 1"}`,
			`{"type":"RUN_FINISHED","threadId":"t","runId":"run","outcome":{"type":"interrupt","interrupts":[{"id":"r:17:c1","reason":"tool_approval","message":"approve the call of calculator","toolCallId":"c1","expiresAt":"2030-01-01T00:00:00Z","metadata":{"input":{"x":1},"tool":"calculator","why":""}}]},"metadata":{"eventId":"17"}}`,
		},
		done: true,
	}, {
		name: "a resumed run goes on after the pause",
		events: []chat.Event{
			ev(chat.EventApproval, 3, func(e *chat.Event) { e.Approval = &chat.ApprovalInfo{CallID: "c1", Approved: true} }),
			ev(chat.EventToolCall, 4, tool(chat.ToolEvent{CallID: "c2", Name: "clock", Input: json.RawMessage(`{}`)}, "")),
			ev(chat.EventStep, 5, func(e *chat.Event) { e.Step = &chat.StepInfo{Number: 1, Continues: true} }),
			ev(chat.EventCancelled, 6, nil)},
		want: []string{
			`{"type":"TOOL_CALL_START","toolCallId":"c2","toolCallName":"clock","parentMessageId":"r-1-call-4"}`,
			`{"type":"TOOL_CALL_ARGS","delta":"{}","toolCallId":"c2"}`,
			`{"type":"TOOL_CALL_END","toolCallId":"c2"}`,
			`{"type":"STEP_STARTED","stepName":"step 2"}`,
			`{"type":"STEP_FINISHED","stepName":"step 2"}`,
			`{"type":"RUN_FINISHED","threadId":"t","runId":"run","outcome":{"type":"cancelled"}}`,
		},
		done: true,
	}, {
		name: "error",
		events: []chat.Event{ev(chat.EventStart, 0, nil), ev(chat.EventDelta, 1, msg("Hi")),
			ev(chat.EventError, 2, func(e *chat.Event) { e.Error = &chat.StreamError{Code: chat.CodeProvider, Message: "the model failed"} })},
		want: []string{
			`{"type":"STEP_STARTED","stepName":"step 1"}`,
			`{"type":"TEXT_MESSAGE_START","messageId":"r-1-text-1","role":"assistant"}`,
			`{"type":"TEXT_MESSAGE_CONTENT","messageId":"r-1-text-1","delta":"Hi"}`,
			`{"type":"RUN_ERROR","message":"the model failed","code":"PROVIDER_ERROR"}`,
		},
		done: true,
	}, {
		name: "restart takes back what the attempt showed",
		events: []chat.Event{ev(chat.EventStart, 0, nil), ev(chat.EventDelta, 1, msg("Hi")),
			ev(chat.EventRestart, 0, func(e *chat.Event) { e.Attempt = 2 })},
		want: []string{
			`{"type":"STEP_STARTED","stepName":"step 1"}`,
			`{"type":"TEXT_MESSAGE_START","messageId":"r-1-text-1","role":"assistant"}`,
			`{"type":"TEXT_MESSAGE_CONTENT","messageId":"r-1-text-1","delta":"Hi"}`,
			`{"type":"TEXT_MESSAGE_END","messageId":"r-1-text-1"}`,
			`{"type":"STEP_FINISHED","stepName":"step 1"}`,
			`{"type":"MESSAGES_SNAPSHOT","messages":[{"id":"u1","role":"user","content":"hi"},{"id":"older","role":"assistant","content":"x"}]}`,
			`{"type":"CUSTOM","name":"restart","value":{"requestId":"r"}}`,
		},
	}, {
		name:   "history gone",
		events: []chat.Event{{Type: chat.EventResync}},
		want:   []string{`{"type":"RUN_ERROR","message":"the history no longer reaches this run: reload the conversation","code":"UNAVAILABLE"}`},
		done:   true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder("t", "run")
			// The client's history: its question, an older answer, and
			// what it was shown of this one.
			e.history = []json.RawMessage{[]byte(`{"id":"u1","role":"user","content":"hi"}`), []byte(`{"id":"older","role":"assistant","content":"x"}`),
				[]byte(`{"id":"r-1-text-1","role":"assistant","content":"H"}`), []byte(`{"id":"r-1-call-3","role":"assistant","toolCalls":[]}`)}
			var out []byte
			done := false
			for i := range tt.events {
				if done {
					t.Fatalf("event %d after the run ended", i)
				}
				out, done = e.Event(out, &tt.events[i])
			}
			if done != tt.done {
				t.Errorf("done = %v, want %v", done, tt.done)
			}
			var got []string
			for _, f := range strings.SplitAfter(string(out), "\n\n") {
				if f == "" {
					continue
				}
				if _, rest, ok := strings.Cut(f, "\n"); ok && strings.HasPrefix(f, "id: ") {
					f = rest // the stored event's position, on its last frame
				}
				data, ok := strings.CutPrefix(f, "data: ")
				if !ok || strings.Count(data, "\n") != 2 {
					t.Fatalf("not one SSE data line: %q", f)
				}
				got = append(got, strings.TrimSuffix(data, "\n\n"))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
