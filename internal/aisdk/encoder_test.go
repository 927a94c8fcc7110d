package aisdk

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// events of one answer, for the restart tests.
type answerEvents struct{ evs []chat.Event }

func (a *answerEvents) add(ev chat.Event) *answerEvents {
	ev.RequestID, ev.Index = "r", len(a.evs)
	a.evs = append(a.evs, ev)
	return a
}

func (a *answerEvents) start() *answerEvents {
	return a.add(chat.Event{Type: chat.EventStart, SessionID: "s", Model: "m"})
}
func (a *answerEvents) text(s string) *answerEvents {
	return a.add(chat.Event{Type: chat.EventDelta, Message: s})
}
func (a *answerEvents) reasoning(s string) *answerEvents {
	return a.add(chat.Event{Type: chat.EventReasoning, Message: s})
}
func (a *answerEvents) call(id, name, input string, deltas ...string) *answerEvents {
	a.add(chat.Event{Type: chat.EventToolCallStart, Tool: &chat.ToolEvent{CallID: id, Name: name}})
	for _, d := range deltas {
		a.add(chat.Event{Type: chat.EventToolCallDelta, Tool: &chat.ToolEvent{CallID: id}, Message: d})
	}
	return a.add(chat.Event{Type: chat.EventToolCall, Tool: &chat.ToolEvent{CallID: id, Name: name, Input: json.RawMessage(input)}})
}
func (a *answerEvents) result(id, output string) *answerEvents {
	return a.add(chat.Event{Type: chat.EventToolResult, Tool: &chat.ToolEvent{CallID: id, Output: output}})
}
func (a *answerEvents) step(n int, continues bool) *answerEvents {
	return a.add(chat.Event{Type: chat.EventStep, Step: &chat.StepInfo{Number: n, Reason: "tool_use", Continues: continues}})
}
func (a *answerEvents) end() *answerEvents {
	return a.add(chat.Event{Type: chat.EventEnd, StopReason: "end_turn"})
}
func (a *answerEvents) fail() *answerEvents {
	return a.add(chat.Event{Type: chat.EventError, Error: &chat.StreamError{Code: chat.CodeInternal, Message: "the answer could not be generated"}})
}

// firstSteps is a run's first step as the model streamed it, and as a new
// attempt replays it from the store: the same parts, in fewer events.
func firstSteps(a *answerEvents, streamed bool) *answerEvents {
	a.start()
	if streamed {
		a.reasoning("I need ").reasoning("the calculator").call("c1", "calculator", `{"expression":"6*7"}`, `{"expression":`, `"6*7"}`)
	} else {
		a.reasoning("I need the calculator").call("c1", "calculator", `{"expression":"6*7"}`)
	}
	return a.step(1, true)
}

// describe is the message as a user sees it: each step's parts, in order,
// with their text, tool input and result.
func describe(v *view) string {
	var b strings.Builder
	for i, s := range v.steps {
		fmt.Fprintf(&b, "step %d (finished %v):\n", i+1, s.finished)
		for _, p := range s.parts {
			switch p.kind {
			case "tool":
				out := "no result"
				if p.output != nil {
					out = "result " + *p.output
				} else if p.failed {
					out = "error " + p.errText
				}
				fmt.Fprintf(&b, "  tool %s %s %s open=%v %s approval=%q\n", p.id, p.name, p.input, p.open, out, p.approval)
			default:
				fmt.Fprintf(&b, "  %s %s %q open=%v %s %s\n", p.kind, p.id, p.text, p.open, p.url, p.title)
			}
		}
	}
	return b.String()
}

// clientMessage is the UI message a client builds of a stream: the chunks
// parsed back and applied as processUIMessageStream applies them.
func clientMessage(t *testing.T, out []byte) (view, []string) {
	t.Helper()
	var v view
	var types []string
	for _, f := range sseFrames(t, out) {
		if f == doneType {
			types = append(types, f)
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(f), &c); err != nil {
			t.Fatalf("frame %s: %v", f, err)
		}
		checkApplies(t, &v, c)
		v.apply(c)
		types = append(types, c.Type)
	}
	return v, types
}

// checkApplies fails where readUIMessageStream would throw: a delta or end
// of a part that is not open in the current step, a result of a tool call
// the message does not hold.
func checkApplies(t *testing.T, v *view, c chunk) {
	t.Helper()
	var ok bool
	switch c.Type {
	case "text-delta", "text-end", "reasoning-delta", "reasoning-end":
		kind := c.Type[:strings.IndexByte(c.Type, '-')]
		p := v.find(kind, c.ID, true)
		ok = p != nil && p.open
	case "tool-input-delta":
		p := v.find("tool", c.ToolCallID, true)
		ok = p != nil && p.open
	case "tool-output-available", "tool-output-error", "tool-approval-request":
		ok = v.find("tool", c.ToolCallID, false) != nil
	default:
		return
	}
	if !ok {
		t.Fatalf("%s of %s%s: the client holds no such part", c.Type, c.ID, c.ToolCallID)
	}
}

func encodeAll(evs ...[]chat.Event) []byte {
	var e encoder
	var out []byte
	for _, part := range evs {
		for i := range part {
			out, _ = e.Event(out, &part[i])
		}
	}
	return out
}

// After a RESTART the client holds each step once, and the new attempt's
// text only: its message is what a client that saw only the new attempt
// holds, tool results included.
func TestRestartShowsEachStepOnce(t *testing.T) {
	restart := []chat.Event{{Type: chat.EventRestart, RequestID: "r"}}
	tests := []struct {
		name       string
		shown, new *answerEvents
	}{{
		name:  "killed mid text of the step after the stored one",
		shown: firstSteps(&answerEvents{}, true).result("c1", "42").text("The ans"),
		new:   firstSteps(&answerEvents{}, false).result("c1", "42").text("The answer").text(" is 42.").step(2, false).end(),
	}, {
		name:  "killed while the step's tools ran: their results come, one of them again",
		shown: firstSteps(&answerEvents{}, true).result("c1", "42"),
		new:   firstSteps(&answerEvents{}, false).result("c1", "42").result("c1", "42").text("It is 42.").step(2, false).end(),
	}, {
		name: "killed while the step's tools ran: a result run again says otherwise",
		shown: (&answerEvents{}).start().call("c1", "calculator", `{}`).call("c2", "clock", `{}`).step(1, true).
			result("c1", "42").result("c2", "11:59"),
		new: (&answerEvents{}).start().call("c1", "calculator", `{}`).call("c2", "clock", `{}`).step(1, true).
			result("c1", "42").result("c2", "noon").text("Noon.").step(2, false).end(),
	}, {
		name:  "killed in a step not stored: the model says otherwise",
		shown: (&answerEvents{}).start().text("Let me look.").call("c1", "search", `{"q":"a"}`).step(1, true),
		new:   (&answerEvents{}).start().text("Let me search.").call("c9", "search", `{"q":"b"}`).step(1, true).result("c9", "found").text("Found.").step(2, false).end(),
	}, {
		name:  "killed after the results: the next step goes on live",
		shown: firstSteps(&answerEvents{}, true).result("c1", "42"),
		new:   firstSteps(&answerEvents{}, false).result("c1", "42").text("It is 42.").step(2, false).end(),
	}, {
		name:  "the new attempt says what was shown, then more",
		shown: (&answerEvents{}).start().text("Hel"),
		new:   (&answerEvents{}).start().text("Hel").text("lo").end(),
	}, {
		name:  "a plain answer said differently",
		shown: (&answerEvents{}).start().text("Hello the"),
		new:   (&answerEvents{}).start().text("Hi").end(),
	}, {
		name:  "killed mid tool input",
		shown: (&answerEvents{}).start().text("Let me see.").add(chat.Event{Type: chat.EventToolCallStart, Tool: &chat.ToolEvent{CallID: "c1", Name: "calculator"}}),
		new:   (&answerEvents{}).start().text("Let me see.").call("c1", "calculator", `{"expression":"1+1"}`, `{"expression":"1+1"}`).step(1, true).result("c1", "2").text("2").step(2, false).end(),
	}, {
		name:  "a reply that ended",
		shown: firstSteps(&answerEvents{}, true).result("c1", "42").text("It is 42."),
		new:   firstSteps(&answerEvents{}, false).result("c1", "42").text("It is 42.").step(2, false).end(),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, types := clientMessage(t, encodeAll(tt.shown.evs, restart, tt.new.evs))
			want, _ := clientMessage(t, encodeAll(tt.new.evs))
			if g, w := describe(&got), describe(&want); g != w {
				t.Errorf("the client holds\n%s\nwant what the new attempt alone shows\n%s\nchunks %s", g, w, strings.Join(types, " "))
			}
			if types[len(types)-1] != doneType || slices.Index(types, "start") != 0 || slices.Index(types[1:], "start") >= 0 {
				t.Errorf("chunks %s: want one start and the end", strings.Join(types, " "))
			}
		})
	}
}

// What follows a RESTART on the wire: nothing for the stored step the new
// attempt repeats, then the step in flight replaced.
func TestRestartChunks(t *testing.T) {
	shown := firstSteps(&answerEvents{}, true).result("c1", "42").text("The ans")
	next := firstSteps(&answerEvents{}, false).result("c1", "42").text("The answer").text(" is 42.").step(2, false).end()
	var e encoder
	var out []byte
	for i := range shown.evs {
		out, _ = e.Event(out, &shown.evs[i])
	}
	out, _ = e.Event(out[:0], &chat.Event{Type: chat.EventRestart, RequestID: "r"})
	for i := range next.evs {
		out, _ = e.Event(out, &next.evs[i])
	}
	got := strings.Join(sseFrames(t, out), "\n")
	want := strings.Join([]string{
		`{"type":"reset-step"}`,
		`{"type":"text-start","id":"text-3"}`,
		`{"type":"text-delta","id":"text-3","delta":"The answer"}`,
		`{"type":"text-delta","id":"text-3","delta":" is 42."}`,
		`{"type":"text-end","id":"text-3"}`,
		`{"type":"finish-step"}`,
		`{"type":"finish","finishReason":"stop","messageMetadata":{"requestId":"r","status":"COMPLETE","stopReason":"end_turn"}}`,
		`[DONE]`,
	}, "\n")
	if got != want {
		t.Errorf("after RESTART:\n%s\nwant:\n%s", got, want)
	}
}

// Parallel tool calls whose results come after their step's end: each
// result lands on its own tool part, the step after starts with its own
// first part, and no chunk names a part the client does not hold.
func TestToolResultsAfterTheStepEnd(t *testing.T) {
	a := (&answerEvents{}).start().call("c1", "calculator", `{"expression":"6*7"}`).call("c2", "clock", `{}`).step(1, true).
		result("c2", "noon").add(chat.Event{Type: chat.EventToolResult, Tool: &chat.ToolEvent{CallID: "c1", Output: "overflow", IsError: true}}).
		text("Noon.").step(2, false).end()
	got, types := clientMessage(t, encodeAll(a.evs))
	want := "step 1 (finished true):\n" +
		"  tool c1 calculator {\"expression\":\"6*7\"} open=false error overflow approval=\"\"\n" +
		"  tool c2 clock {} open=false result noon approval=\"\"\n" +
		"step 2 (finished true):\n" +
		"  text text-3 \"Noon.\" open=false  \n"
	if g := describe(&got); g != want {
		t.Errorf("the client holds\n%s\nwant\n%s\nchunks %s", g, want, strings.Join(types, " "))
	}
}
