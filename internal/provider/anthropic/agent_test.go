package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// What an agent run adds to the wire: tools and content blocks in the
// request, parts of every kind in the stream.

// Byte strings the provider signs or encrypts, with the characters base64
// uses beside letters, so that any re-encoding would show.
const (
	testSignature = "EqQBCkgIARABGAIiQL+/fake/signature+of/the==thinking=="
	testRedacted  = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP+fake=="
)

func blockStartAt(index int, contentBlock string) string {
	return ev("content_block_start", `{"type":"content_block_start","index":`+strconv.Itoa(index)+`,"content_block":`+contentBlock+`}`)
}

func blockDeltaAt(index int, delta string) string {
	return ev("content_block_delta", `{"type":"content_block_delta","index":`+strconv.Itoa(index)+`,"delta":`+delta+`}`)
}

func blockStopAt(index int) string {
	return ev("content_block_stop", `{"type":"content_block_stop","index":`+strconv.Itoa(index)+`}`)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func textAt(index int, s string) string {
	return blockDeltaAt(index, `{"type":"text_delta","text":`+quote(s)+`}`)
}

func inputAt(index int, fragment string) string {
	return blockDeltaAt(index, `{"type":"input_json_delta","partial_json":`+quote(fragment)+`}`)
}

func toolUseAt(index int, id, name string) string {
	return blockStartAt(index, `{"type":"tool_use","id":"`+id+`","name":"`+name+`","input":{}}`)
}

var (
	textBlockAt = func(index int) string { return blockStartAt(index, `{"type":"text","text":""}`) }
	thinkingAt  = func(index int) string {
		return blockStartAt(index, `{"type":"thinking","thinking":"","signature":""}`)
	}
)

// collectParts streams prompt and returns every part as it arrived.
func collectParts(ctx context.Context, p *Provider, prompt chat.Prompt) ([]chat.Part, chat.Final, error) {
	var got []chat.Part
	final, err := p.Stream(ctx, prompt, func(pt chat.Part) error {
		got = append(got, pt)
		return nil
	})
	return got, final, err
}

func textPart(s string) chat.Part      { return chat.TextPart(s) }
func reasoningPart(s string) chat.Part { return chat.Part{Kind: chat.PartReasoning, Text: s} }
func signaturePart(s string) chat.Part { return chat.Part{Kind: chat.PartSignature, Text: s} }
func redactedPart(s string) chat.Part  { return chat.Part{Kind: chat.PartRedacted, Data: []byte(s)} }
func toolStartPart(id, name string) chat.Part {
	return chat.Part{Kind: chat.PartToolStart, CallID: id, Name: name}
}
func toolDeltaPart(id, s string) chat.Part {
	return chat.Part{Kind: chat.PartToolDelta, CallID: id, Text: s}
}
func toolEndPart(id string) chat.Part { return chat.Part{Kind: chat.PartToolEnd, CallID: id} }
func sourcePart(title, url, cited string) chat.Part {
	return chat.Part{Kind: chat.PartSource, Source: &chat.Source{Title: title, URL: url, Text: cited}}
}

func TestStreamParts(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		want  []chat.Part
		final chat.Final
	}{
		{
			name: "text, then a tool call whose input arrives in fragments",
			body: start(`{"input_tokens":50,"cache_creation_input_tokens":20,"cache_read_input_tokens":300,"output_tokens":1}`) +
				textBlockAt(0) + textAt(0, "Let me ") + textAt(0, "check.") + blockStopAt(0) +
				toolUseAt(1, "toolu_01", "get_weather") + inputAt(1, "") + inputAt(1, `{"city":`) + ping +
				inputAt(1, ` "Par`) + inputAt(1, `is"}`) + blockStopAt(1) +
				messageDelta("tool_use", "42") + messageStop,
			want: []chat.Part{
				textPart("Let me "), textPart("check."),
				toolStartPart("toolu_01", "get_weather"),
				toolDeltaPart("toolu_01", `{"city":`), toolDeltaPart("toolu_01", ` "Par`), toolDeltaPart("toolu_01", `is"}`),
				toolEndPart("toolu_01"),
			},
			final: chat.Final{StopReason: "tool_use", Usage: chat.Usage{InputTokens: 370, OutputTokens: 42, TotalTokens: 412,
				CacheReadTokens: 300, CacheWriteTokens: 20}},
		},
		{
			name: "two tool calls at once: each fragment goes to the call of its block index",
			body: start(`{"input_tokens":10}`) +
				toolUseAt(0, "toolu_A", "get_weather") + toolUseAt(1, "toolu_B", "get_weather") +
				inputAt(1, `{"city":"Rome"}`) + inputAt(0, `{"city":`) + blockStopAt(1) +
				inputAt(0, `"Paris"}`) + blockStopAt(0) +
				messageDelta("tool_use", "30") + messageStop,
			want: []chat.Part{
				toolStartPart("toolu_A", "get_weather"), toolStartPart("toolu_B", "get_weather"),
				toolDeltaPart("toolu_B", `{"city":"Rome"}`), toolDeltaPart("toolu_A", `{"city":`), toolEndPart("toolu_B"),
				toolDeltaPart("toolu_A", `"Paris"}`), toolEndPart("toolu_A"),
			},
			final: chat.Final{StopReason: "tool_use", Usage: chat.Usage{InputTokens: 10, OutputTokens: 30, TotalTokens: 40}},
		},
		{
			name: "thinking with its signature, then the answer",
			body: start(`{"input_tokens":10}`) +
				thinkingAt(0) + blockDeltaAt(0, `{"type":"thinking_delta","thinking":"Two cities,"}`) +
				blockDeltaAt(0, `{"type":"thinking_delta","thinking":" one clock."}`) +
				blockDeltaAt(0, `{"type":"signature_delta","signature":"`+testSignature+`"}`) + blockStopAt(0) +
				textBlockAt(1) + textAt(1, "Done.") + blockStopAt(1) +
				messageDelta("end_turn", "20") + messageStop,
			want: []chat.Part{
				reasoningPart("Two cities,"), reasoningPart(" one clock."), signaturePart(testSignature), textPart("Done."),
			},
			final: chat.Final{StopReason: "end_turn", Usage: chat.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}},
		},
		{
			name: "redacted thinking arrives whole in its block's start",
			body: start(`{"input_tokens":10}`) +
				blockStartAt(0, `{"type":"redacted_thinking","data":"`+testRedacted+`"}`) + blockStopAt(0) +
				thinkingAt(1) + blockDeltaAt(1, `{"type":"thinking_delta","thinking":"ok"}`) +
				blockDeltaAt(1, `{"type":"signature_delta","signature":"sig2"}`) + blockStopAt(1) +
				textBlockAt(2) + textAt(2, "Done.") + blockStopAt(2) +
				messageDelta("end_turn", "20") + messageStop,
			want: []chat.Part{
				redactedPart(testRedacted), reasoningPart("ok"), signaturePart("sig2"), textPart("Done."),
			},
			final: chat.Final{StopReason: "end_turn", Usage: chat.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}},
		},
		{
			name: "citations of a document and of a web page",
			body: start(`{"input_tokens":10}`) +
				blockStartAt(0, `{"type":"text","text":"","citations":[]}`) +
				blockDeltaAt(0, `{"type":"citations_delta","citation":{"type":"char_location","cited_text":"The grass is green.","document_index":0,"document_title":"Plants","start_char_index":0,"end_char_index":19}}`) +
				textAt(0, "Grass is green.") + blockStopAt(0) +
				blockStartAt(1, `{"type":"text","text":"","citations":[]}`) +
				blockDeltaAt(1, `{"type":"citations_delta","citation":{"type":"web_search_result_location","cited_text":"Sky: blue.","url":"https://example.com/sky","title":"Sky facts","encrypted_index":"Eo8BCioI"}}`) +
				textAt(1, " The sky is blue.") + blockStopAt(1) +
				messageDelta("end_turn", "20") + messageStop,
			want: []chat.Part{
				sourcePart("Plants", "", "The grass is green."), textPart("Grass is green."),
				sourcePart("Sky facts", "https://example.com/sky", "Sky: blue."), textPart(" The sky is blue."),
			},
			final: chat.Final{StopReason: "end_turn", Usage: chat.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}},
		},
		{
			name: "server tool blocks run at the provider and are not ours to call",
			body: start(`{"input_tokens":10}`) +
				blockStartAt(0, `{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}`) +
				inputAt(0, `{"query":"sky"}`) + blockStopAt(0) +
				blockStartAt(1, `{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]}`) + blockStopAt(1) +
				textBlockAt(2) + textAt(2, "Blue.") + blockStopAt(2) +
				messageDelta("end_turn", "20") + messageStop,
			want:  []chat.Part{textPart("Blue.")},
			final: chat.Final{StopReason: "end_turn", Usage: chat.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, sse(tt.body))
			p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
			got, final, err := collectParts(t.Context(), p, conversation)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parts:\n%s\nwant:\n%s", describe(got), describe(tt.want))
			}
			if final != tt.final {
				t.Errorf("final = %+v, want %+v", final, tt.final)
			}
		})
	}
}

func TestStreamRefusesAToolCallWithoutID(t *testing.T) {
	srv, _ := fakeServer(t, sse(start(`{}`)+blockStartAt(0, `{"type":"tool_use","name":"x","input":{}}`)+messageStop))
	p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
	_, _, err := collectParts(t.Context(), p, conversation)
	var public *chat.Error
	if !errors.As(err, &public) || public.Code != chat.CodeProvider {
		t.Fatalf("err = %v, want %s", err, chat.CodeProvider)
	}
}

// describe lists parts one a line, for a failure message.
func describe(parts []chat.Part) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("  ")
		b.WriteString(strconv.Itoa(int(p.Kind)))
		for _, f := range []string{p.CallID, p.Name, p.Text, string(p.Data)} {
			if f != "" {
				b.WriteString(" " + strconv.Quote(f))
			}
		}
		if p.Source != nil {
			b.WriteString(" " + strconv.Quote(p.Source.Title+"|"+p.Source.URL+"|"+p.Source.Text))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// agentPrompt offers tools and carries back a step of every block kind.
var agentPrompt = chat.Prompt{
	Model:  "claude-test",
	System: "You are terse.",
	Tools: []chat.ToolSpec{
		{Name: "get_weather", Description: "Weather of a city.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)},
		{Name: "now"},
	},
	Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "hello"},
		{Role: chat.RoleAssistant, Text: "hi"},
		{Role: chat.RoleUser, Text: "Weather in Paris and Rome, and the time?"},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Two cities, one clock.", Signature: testSignature},
			{Kind: chat.BlockRedacted, Data: []byte(testRedacted)},
			{Kind: chat.BlockText, Text: "Checking."},
			{Kind: chat.BlockText},
			{Kind: chat.BlockToolCall, CallID: "toolu_01", Name: "get_weather", Input: json.RawMessage(`{"city": "Paris"}`)},
			{Kind: chat.BlockToolCall, CallID: "toolu_02", Name: "get_weather", Input: json.RawMessage(`{"city":"Rome"}`)},
			{Kind: chat.BlockToolCall, CallID: "toolu_03", Name: "now"},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "toolu_01", Name: "get_weather", Text: "18°C, sunny", DurationMillis: 12},
			{Kind: chat.BlockToolResult, CallID: "toolu_02", Name: "get_weather", Text: "no such city", IsError: true},
			{Kind: chat.BlockToolResult, CallID: "toolu_03", Name: "now", Text: "", Truncated: true},
		}},
	},
}

// agentBody is the request agentPrompt makes with thinking on, byte for
// byte (after compacting): the empty text block is left out, a call without
// input sends an empty object, a tool without a schema an object schema.
const agentBody = `{
	"model": "claude-test",
	"max_tokens": 4096,
	"system": "You are terse.",
	"messages": [
		{"role": "user", "content": "hello"},
		{"role": "assistant", "content": "hi"},
		{"role": "user", "content": "Weather in Paris and Rome, and the time?"},
		{"role": "assistant", "content": [
			{"type": "thinking", "thinking": "Two cities, one clock.", "signature": "` + testSignature + `"},
			{"type": "redacted_thinking", "data": "` + testRedacted + `"},
			{"type": "text", "text": "Checking."},
			{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
			{"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
			{"type": "tool_use", "id": "toolu_03", "name": "now", "input": {}}
		]},
		{"role": "user", "content": [
			{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C, sunny"},
			{"type": "tool_result", "tool_use_id": "toolu_02", "content": "no such city", "is_error": true},
			{"type": "tool_result", "tool_use_id": "toolu_03"}
		]}
	],
	"tools": [
		{"name": "get_weather", "description": "Weather of a city.",
			"input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
		{"name": "now", "input_schema": {"type": "object"}}
	],
	"thinking": {"type": "enabled", "budget_tokens": 2048},
	"stream": true
}`

func TestStreamSendsToolsAndBlocks(t *testing.T) {
	srv, got := fakeServer(t, sse(start(`{"input_tokens":1}`)+text("ok")+messageDelta("end_turn", "1")+messageStop))
	p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey, MaxTokens: 4096, ThinkingBudget: 2048})
	if _, _, err := collectParts(t.Context(), p, agentPrompt); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(agentBody)); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if !bytes.Equal(req.body, want.Bytes()) {
		t.Errorf("request body:\n%s\nwant:\n%s", req.body, want.Bytes())
	}
}

func TestStreamRefusesBlocksItCannotSend(t *testing.T) {
	tests := []struct {
		name   string
		prompt chat.Prompt
	}{
		{name: "tool input that is not JSON", prompt: chat.Prompt{Model: "m", Messages: []chat.Message{
			{Role: chat.RoleAssistant, Blocks: []chat.Block{{Kind: chat.BlockToolCall, CallID: "c", Name: "n", Input: json.RawMessage(`{"a":`)}}},
		}}},
		{name: "unknown block kind", prompt: chat.Prompt{Model: "m", Messages: []chat.Message{
			{Role: chat.RoleUser, Blocks: []chat.Block{{Kind: "image", Text: "x"}}},
		}}},
		{name: "tool schema that is not JSON", prompt: chat.Prompt{Model: "m",
			Tools:    []chat.ToolSpec{{Name: "n", InputSchema: json.RawMessage(`{`)}},
			Messages: []chat.Message{{Role: chat.RoleUser, Text: "q"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := fakeServer(t, sse(start(`{}`)+messageStop))
			p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
			if _, _, err := collectParts(t.Context(), p, tt.prompt); err == nil {
				t.Fatal("Stream succeeded")
			}
			select {
			case req := <-got:
				t.Errorf("a request was sent: %s", req.body)
			default:
			}
		})
	}
}

func TestNewChecksThinking(t *testing.T) {
	one, half := 1.0, 0.5
	tests := []struct {
		name          string
		opts          Options
		wantErr       string
		wantMaxTokens int
	}{
		{name: "off", opts: Options{}, wantMaxTokens: DefaultMaxTokens},
		{name: "on: max tokens default to the budget plus room for the answer",
			opts: Options{ThinkingBudget: 2000}, wantMaxTokens: 2000 + DefaultMaxTokens},
		{name: "on with max tokens above the budget", opts: Options{ThinkingBudget: 2000, MaxTokens: 2001}, wantMaxTokens: 2001},
		{name: "temperature 1 is allowed", opts: Options{ThinkingBudget: 2000, Temperature: &one}, wantMaxTokens: 3024},
		{name: "below the minimum", opts: Options{ThinkingBudget: 1023}, wantErr: "minimum"},
		{name: "negative", opts: Options{ThinkingBudget: -1}, wantErr: "minimum"},
		{name: "max tokens not above the budget", opts: Options{ThinkingBudget: 2000, MaxTokens: 2000}, wantErr: "larger than the thinking budget"},
		{name: "another temperature", opts: Options{ThinkingBudget: 2000, Temperature: &half}, wantErr: "temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.BaseURL = "http://127.0.0.1:1"
			p, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.opts.MaxTokens != tt.wantMaxTokens {
				t.Errorf("max tokens = %d, want %d", p.opts.MaxTokens, tt.wantMaxTokens)
			}
		})
	}
}

func TestStreamLeavesToolsAndThinkingOut(t *testing.T) {
	srv, got := fakeServer(t, sse(start(`{"input_tokens":1}`)+text("ok")+messageDelta("end_turn", "1")+messageStop))
	if _, _, err := collectParts(t.Context(), newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey}), conversation); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	var body map[string]any
	req := <-got
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"tools", "thinking"} {
		if _, ok := body[key]; ok {
			t.Errorf("body has %s though none was asked for: %s", key, req.body)
		}
	}
}
