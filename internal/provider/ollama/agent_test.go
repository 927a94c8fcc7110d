package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// agentPrompt is the third model call of an agent run: two parallel calls
// (one failed), a retry, then the user's follow-up; every kind of block.
var agentPrompt = chat.Prompt{
	Model:  "llama3.1",
	System: "You are terse.",
	Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "Weather and time in Paris?"},
		{Role: chat.RoleAssistant, Text: "ignored when there are blocks", Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Both tools, ", Signature: "sig-1"},
			{Kind: chat.BlockRedacted, Data: []byte{0xde, 0xad}},
			{Kind: chat.BlockReasoning, Text: "in parallel."},
			{Kind: chat.BlockText, Text: "Checking "},
			{Kind: chat.BlockText, Text: "both."},
			{Kind: chat.BlockToolCall, CallID: "call_0", Name: "get_weather", Input: json.RawMessage(`{"city": "Paris"}`)},
			{Kind: chat.BlockToolCall, CallID: "call_1", Name: "get_time", Input: json.RawMessage(`{"tz":"Europe/Paris"}`)},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "call_0", Name: "get_weather", Text: "18°C, clear"},
			{Kind: chat.BlockToolResult, CallID: "call_1", Name: "get_time", Text: "clock unavailable", IsError: true},
		}},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Retry without a zone."},
			// Broken JSON from a model goes as an empty object.
			{Kind: chat.BlockToolCall, CallID: "call_2", Name: "get_time", Input: json.RawMessage(`{"tz":`)},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "call_2", Name: "get_time", Text: "14:05"},
		}},
		{Role: chat.RoleUser, Text: "Thanks. And tomorrow?"},
	},
	Tools: []chat.ToolSpec{
		{Name: "get_weather", Description: "Current weather in a city.",
			InputSchema: json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`)},
		{Name: "get_time"},
	},
}

func TestStreamSendsToolsAndBlocks(t *testing.T) {
	want, err := os.ReadFile("testdata/agent_request.json")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	seen := make(chan []byte, 1)
	p := fake(t, 200, okStream, seen)
	if _, err := p.Stream(t.Context(), agentPrompt, func(chat.Part) error { return nil }); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if got := <-seen; !bytes.Equal(got, compact.Bytes()) {
		var indented bytes.Buffer
		_ = json.Indent(&indented, got, "", "  ")
		t.Errorf("request body:\n%s\nwant testdata/agent_request.json:\n%s", indented.Bytes(), want)
	}
}

const (
	// toolStream is qwen3 thinking, then calling a tool: the call arrives
	// whole in one line, without an id.
	toolStream = `{"model":"qwen3","created_at":"2025-05-27T22:54:57.1Z","message":{"role":"assistant","content":"","thinking":"The user wants "},"done":false}
{"model":"qwen3","created_at":"2025-05-27T22:54:57.2Z","message":{"role":"assistant","content":"","thinking":"the weather."},"done":false}
{"model":"qwen3","created_at":"2025-05-27T22:54:57.6Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Toronto","format":"celsius"}}}]},"done":false}
{"model":"qwen3","created_at":"2025-05-27T22:54:57.9Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":50,"eval_count":20}
`
	// parallelStream has two calls in one line, the first with a server id
	// (newer servers), the second without, then text.
	parallelStream = `{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_srv9","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}},{"function":{"index":1,"name":"get_time","arguments":{}}}]},"done":false}
{"message":{"role":"assistant","content":"Asked."},"done":false}
{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":7}
`
)

// partRules checks a Part sequence against the contract: no empty text,
// tool deltas and ends only for a call that is open, a call id used once.
type partRules struct {
	open, seen map[string]bool
}

func (r *partRules) check(pt chat.Part) error {
	if r.open == nil {
		r.open, r.seen = map[string]bool{}, map[string]bool{}
	}
	switch pt.Kind {
	case chat.PartText, chat.PartReasoning:
		if pt.Text == "" {
			return fmt.Errorf("empty text in %+v", pt)
		}
	case chat.PartToolStart:
		if pt.CallID == "" || r.seen[pt.CallID] {
			return fmt.Errorf("start of a call without an id or used before: %+v", pt)
		}
		r.open[pt.CallID], r.seen[pt.CallID] = true, true
	case chat.PartToolDelta:
		if !r.open[pt.CallID] || pt.Text == "" {
			return fmt.Errorf("delta of a call not open, or empty: %+v", pt)
		}
	case chat.PartToolEnd:
		if !r.open[pt.CallID] {
			return fmt.Errorf("end of a call not open: %+v", pt)
		}
		delete(r.open, pt.CallID)
	default:
		return fmt.Errorf("unexpected part %+v", pt)
	}
	return nil
}

func TestStreamAgentParts(t *testing.T) {
	reasoning := func(s string) chat.Part { return chat.Part{Kind: chat.PartReasoning, Text: s} }
	call := func(id, name, input string) []chat.Part {
		return []chat.Part{
			{Kind: chat.PartToolStart, CallID: id, Name: name},
			{Kind: chat.PartToolDelta, CallID: id, Text: input},
			{Kind: chat.PartToolEnd, CallID: id},
		}
	}
	// history already has a call_0: a new call must not reuse it.
	history := chat.Prompt{Model: "llama3.1", Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "go"},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{{Kind: chat.BlockToolCall, CallID: "call_0", Name: "get_time"}}},
		{Role: chat.RoleUser, Blocks: []chat.Block{{Kind: chat.BlockToolResult, CallID: "call_0", Name: "get_time", Text: "12:00"}}},
	}}
	tests := []struct {
		name   string
		body   string
		prompt chat.Prompt
		want   []chat.Part
		final  chat.Final
	}{
		{
			name:   "thinking, then a call without an id",
			body:   toolStream,
			prompt: prompt,
			want: append([]chat.Part{reasoning("The user wants "), reasoning("the weather.")},
				call("call_0", "get_weather", `{"city":"Toronto","format":"celsius"}`)...),
			final: chat.Final{Usage: chat.Usage{InputTokens: 50, OutputTokens: 20, TotalTokens: 70}, StopReason: "stop"},
		},
		{
			name:   "two calls in one line, one with the server's id; ids apart from the conversation's",
			body:   parallelStream,
			prompt: history,
			want: append(append(call("call_srv9", "get_weather", `{"city":"Paris"}`),
				call("call_1", "get_time", `{}`)...), chat.TextPart("Asked.")),
			final: chat.Final{Usage: chat.Usage{InputTokens: 5, OutputTokens: 7, TotalTokens: 12}, StopReason: "stop"},
		},
		{
			name: "arguments encoded as a string, or none",
			body: `{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}},{"function":{"name":"g"}}]},"done":false}` + "\n" +
				`{"done":true,"done_reason":"stop"}` + "\n",
			prompt: prompt,
			want:   append(call("call_0", "f", `{"a":1}`), call("call_1", "g", `{}`)...),
			final:  chat.Final{StopReason: "stop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fake(t, 200, tt.body, nil)
			var got []chat.Part
			var rules partRules
			final, err := p.Stream(t.Context(), tt.prompt, func(pt chat.Part) error {
				if err := rules.check(pt); err != nil {
					t.Error(err)
				}
				got = append(got, pt)
				return nil
			})
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parts:\n%+v\nwant:\n%+v", got, tt.want)
			}
			if final != tt.final {
				t.Errorf("final = %+v, want %+v", final, tt.final)
			}
		})
	}
}
