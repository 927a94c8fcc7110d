package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// agentPrompt is the third model call of an agent run: two parallel calls
// (one failed), a retry, then the user's follow-up; every kind of block.
var agentPrompt = chat.Prompt{
	Model:  "gpt-test",
	System: "You are terse.",
	Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "Weather and time in Paris?"},
		{Role: chat.RoleAssistant, Text: "ignored when there are blocks", Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Both tools, in parallel.", Signature: "sig-1"},
			{Kind: chat.BlockRedacted, Data: []byte{0xde, 0xad}},
			{Kind: chat.BlockText, Text: "Checking "},
			{Kind: chat.BlockText, Text: "both."},
			{Kind: chat.BlockToolCall, CallID: "call_w", Name: "get_weather", Input: json.RawMessage(`{"city":"Paris"}`)},
			{Kind: chat.BlockToolCall, CallID: "call_t", Name: "get_time", Input: json.RawMessage(`{"tz":"Europe/Paris"}`)},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "call_w", Name: "get_weather", Text: "18°C, clear"},
			{Kind: chat.BlockToolResult, CallID: "call_t", Name: "get_time", Text: "clock unavailable", IsError: true},
		}},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Retry without a zone."},
			{Kind: chat.BlockToolCall, CallID: "call_t2", Name: "get_time"},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "call_t2", Name: "get_time", Text: "14:05"},
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
	srv, got := fakeServer(t, sse(delta("ok")+finish("stop")+done))
	if _, _, err := collect(t.Context(), newProvider(t, Options{BaseURL: srv.URL}), agentPrompt); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	req := <-got
	if !bytes.Equal(req.body, compact.Bytes()) {
		var indented bytes.Buffer
		_ = json.Indent(&indented, req.body, "", "  ")
		t.Errorf("request body:\n%s\nwant testdata/agent_request.json:\n%s", indented.Bytes(), want)
	}
}

// The wire of tool calls: fragments of choices[0].delta.tool_calls.

// start is the first fragment of the call at index.
func start(index int, id, name string) string {
	idField := ""
	if id != "" {
		idField = `"id":` + quote(id) + `,"type":"function",`
	}
	return fmt.Sprintf(`{"index":%d,%s"function":{"name":%s,"arguments":""}}`, index, idField, quote(name))
}

// args is a later fragment: a piece of the call's arguments.
func args(index int, piece string) string {
	return fmt.Sprintf(`{"index":%d,"function":{"arguments":%s}}`, index, quote(piece))
}

// toolChunk is a chunk carrying tool call fragments.
func toolChunk(fragments ...string) string {
	return `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[` +
		strings.Join(fragments, ",") + `]},"finish_reason":null}]}` + "\n\n"
}

const (
	roleChunk = `data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}]}` + "\n\n"

	splitCallStream = roleChunk +
		`data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Let me look."},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Pa"}}]},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n" +
		`data: {"id":"c1","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":20,"total_tokens":100}}` + "\n\n" +
		done

	wholeCallsAtIndexZero = `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n"
)

var (
	parallelCallStream = roleChunk +
		toolChunk(start(0, "call_a", "get_weather")) +
		toolChunk(start(1, "call_b", "get_time")) +
		toolChunk(args(0, `{"city":`)) +
		toolChunk(args(1, `{"tz":`)) +
		toolChunk(args(1, `"CET"}`), args(0, `"Paris"}`)) +
		finish("tool_calls") + done

	reasoningStream = `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":"Think"},"finish_reason":null}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"ing."}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"reasoning":" More.","reasoning_content":" More."}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"reasoning":" Last."}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"reasoning":{"effort":"low"},"content":"Answer"}}]}` + "\n\n" +
		finish("stop") +
		`data: {"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":50,"total_tokens":80,` +
		`"prompt_tokens_details":{"cached_tokens":24,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":40,"audio_tokens":0}}}` + "\n\n" +
		done
)

func text(s string) chat.Part      { return chat.TextPart(s) }
func reasoning(s string) chat.Part { return chat.Part{Kind: chat.PartReasoning, Text: s} }
func toolStart(id, name string) chat.Part {
	return chat.Part{Kind: chat.PartToolStart, CallID: id, Name: name}
}
func toolDelta(id, piece string) chat.Part {
	return chat.Part{Kind: chat.PartToolDelta, CallID: id, Text: piece}
}
func toolEnd(id string) chat.Part { return chat.Part{Kind: chat.PartToolEnd, CallID: id} }

func TestStreamAgentParts(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		prompt chat.Prompt
		want   []chat.Part
		final  chat.Final
	}{
		{
			name: "one call, its arguments in three pieces, after text",
			body: splitCallStream,
			want: []chat.Part{
				text("Let me look."),
				toolStart("call_abc", "get_weather"),
				toolDelta("call_abc", `{"ci`), toolDelta("call_abc", `ty":"Pa`), toolDelta("call_abc", `ris"}`),
				toolEnd("call_abc"),
			},
			final: chat.Final{Usage: chat.Usage{InputTokens: 80, OutputTokens: 20, TotalTokens: 100}, StopReason: "tool_calls"},
		},
		{
			name: "two parallel calls, indexes interleaved",
			body: parallelCallStream,
			want: []chat.Part{
				toolStart("call_a", "get_weather"),
				toolStart("call_b", "get_time"),
				toolDelta("call_a", `{"city":`),
				toolDelta("call_b", `{"tz":`),
				toolDelta("call_b", `"CET"}`),
				toolDelta("call_a", `"Paris"}`),
				toolEnd("call_a"), toolEnd("call_b"),
			},
			final: chat.Final{StopReason: "tool_calls"},
		},
		{
			name: "reasoning_content and reasoning, then text; usage details",
			body: reasoningStream,
			want: []chat.Part{
				reasoning("Think"), reasoning("ing."), reasoning(" More."), reasoning(" Last."),
				text("Answer"),
			},
			final: chat.Final{StopReason: "stop", Usage: chat.Usage{
				InputTokens: 30, OutputTokens: 50, TotalTokens: 80, ReasoningTokens: 40, CacheReadTokens: 24,
			}},
		},
		{
			name: "calls sent whole, each at index 0",
			body: wholeCallsAtIndexZero,
			want: []chat.Part{
				toolStart("a", "f"), toolDelta("a", `{"x":1}`), toolEnd("a"),
				toolStart("b", "g"), toolDelta("b", `{}`), toolEnd("b"),
			},
			final: chat.Final{StopReason: "tool_calls"},
		},
		{
			name: "[DONE] without finish_reason ends the open call",
			body: toolChunk(start(0, "call_x", "f")) + toolChunk(args(0, `{}`)) + done,
			want: []chat.Part{toolStart("call_x", "f"), toolDelta("call_x", `{}`), toolEnd("call_x")},
		},
		{
			name: "calls without ids are named apart from the conversation's",
			body: toolChunk(start(0, "", "f"), start(1, "", "g")) + toolChunk(args(1, `{}`)) + finish("tool_calls") + done,
			prompt: chat.Prompt{Model: "m", Messages: []chat.Message{
				{Role: chat.RoleUser, Text: "go"},
				{Role: chat.RoleAssistant, Blocks: []chat.Block{{Kind: chat.BlockToolCall, CallID: "call_0", Name: "f"}}},
				{Role: chat.RoleUser, Blocks: []chat.Block{{Kind: chat.BlockToolResult, CallID: "call_0", Name: "f", Text: "ok"}}},
			}},
			want: []chat.Part{
				toolStart("call_1", "f"), toolStart("call_2", "g"), toolDelta("call_2", `{}`),
				toolEnd("call_1"), toolEnd("call_2"),
			},
			final: chat.Final{StopReason: "tool_calls"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, sse(tt.body))
			p := newProvider(t, Options{BaseURL: srv.URL})
			prompt := tt.prompt
			if prompt.Model == "" {
				prompt = conversation
			}
			var got []chat.Part
			var rules partRules
			final, err := p.Stream(t.Context(), prompt, func(pt chat.Part) error {
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
				t.Errorf("parts:\n%s\nwant:\n%s", partsString(got), partsString(tt.want))
			}
			if final != tt.final {
				t.Errorf("final = %+v, want %+v", final, tt.final)
			}
		})
	}
}

func partsString(parts []chat.Part) string {
	var b strings.Builder
	kinds := map[chat.PartKind]string{
		chat.PartText: "text", chat.PartReasoning: "reasoning", chat.PartToolStart: "tool-start",
		chat.PartToolDelta: "tool-delta", chat.PartToolEnd: "tool-end",
	}
	for _, pt := range parts {
		fmt.Fprintf(&b, "  %s id=%q name=%q text=%q\n", kinds[pt.Kind], pt.CallID, pt.Name, pt.Text)
	}
	return b.String()
}
