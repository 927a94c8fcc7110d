package bedrock

import (
	"bytes"
	"context"
	"encoding/base64"
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

// testSignature is a reasoning signature, with the characters base64 uses
// beside letters; testRedacted is encrypted reasoning, bytes that are not
// text, so that any re-encoding would show.
const testSignature = "EqQBCkgIARABGAIiQL+/fake/signature+of/the==thinking=="

var testRedacted = []byte{0x00, 0xff, 0xfe, 0x80, '+', '/', '=', 0x10, 0xc3, 0x28, 0x7f, 0x01}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func blockStartAt(index int, start string) frame {
	return event("contentBlockStart", `{"contentBlockIndex":`+strconv.Itoa(index)+`,"start":`+start+`,"p":"abc"}`)
}

func blockDeltaAt(index int, delta string) frame {
	return event("contentBlockDelta", `{"contentBlockIndex":`+strconv.Itoa(index)+`,"delta":`+delta+`,"p":"abcdef"}`)
}

func blockStopAt(index int) frame {
	return event("contentBlockStop", `{"contentBlockIndex":`+strconv.Itoa(index)+`,"p":"ab"}`)
}

func textAt(index int, s string) frame { return blockDeltaAt(index, `{"text":`+quote(s)+`}`) }

func toolUseAt(index int, id, name string) frame {
	return blockStartAt(index, `{"toolUse":{"toolUseId":"`+id+`","name":"`+name+`"}}`)
}

func inputAt(index int, fragment string) frame {
	return blockDeltaAt(index, `{"toolUse":{"input":`+quote(fragment)+`}}`)
}

func reasoningAt(index int, member string) frame {
	return blockDeltaAt(index, `{"reasoningContent":`+member+`}`)
}

func redactedAt(index int, data []byte) frame {
	return reasoningAt(index, `{"redactedContent":"`+base64.StdEncoding.EncodeToString(data)+`"}`)
}

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
func redactedPart(b []byte) chat.Part  { return chat.Part{Kind: chat.PartRedacted, Data: b} }
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
	stopUsage := event("metadata", `{"usage":{"inputTokens":10,"outputTokens":20,"totalTokens":30},"metrics":{"latencyMs":5}}`)
	plainUsage := chat.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}
	tests := []struct {
		name   string
		frames []frame
		want   []chat.Part
		final  chat.Final
	}{
		{
			name: "text, then a tool call whose input arrives in fragments",
			frames: []frame{messageStart,
				blockStartAt(0, `{}`), textAt(0, "Let me "), textAt(0, "check."), blockStopAt(0),
				toolUseAt(1, "tooluse_01", "get_weather"), inputAt(1, ""), inputAt(1, `{"city":`),
				inputAt(1, ` "Par`), inputAt(1, `is"}`), blockStopAt(1),
				messageStop("tool_use"),
				event("metadata", `{"usage":{"inputTokens":50,"outputTokens":42,"totalTokens":412,"cacheReadInputTokens":300,"cacheWriteInputTokens":20},"metrics":{"latencyMs":120}}`)},
			want: []chat.Part{
				textPart("Let me "), textPart("check."),
				toolStartPart("tooluse_01", "get_weather"),
				toolDeltaPart("tooluse_01", `{"city":`), toolDeltaPart("tooluse_01", ` "Par`), toolDeltaPart("tooluse_01", `is"}`),
				toolEndPart("tooluse_01"),
			},
			final: chat.Final{StopReason: "tool_use", Usage: chat.Usage{InputTokens: 370, OutputTokens: 42, TotalTokens: 412,
				CacheReadTokens: 300, CacheWriteTokens: 20}},
		},
		{
			name: "two tool calls at once: each fragment goes to the call of its block index",
			frames: []frame{messageStart,
				toolUseAt(1, "tooluse_A", "get_weather"), toolUseAt(2, "tooluse_B", "get_weather"),
				inputAt(2, `{"city":"Rome"}`), inputAt(1, `{"city":`), blockStopAt(2),
				inputAt(1, `"Paris"}`), blockStopAt(1),
				messageStop("tool_use"), stopUsage},
			want: []chat.Part{
				toolStartPart("tooluse_A", "get_weather"), toolStartPart("tooluse_B", "get_weather"),
				toolDeltaPart("tooluse_B", `{"city":"Rome"}`), toolDeltaPart("tooluse_A", `{"city":`), toolEndPart("tooluse_B"),
				toolDeltaPart("tooluse_A", `"Paris"}`), toolEndPart("tooluse_A"),
			},
			final: chat.Final{StopReason: "tool_use", Usage: plainUsage},
		},
		{
			name: "reasoning with its signature, then the answer",
			frames: []frame{messageStart,
				reasoningAt(0, `{"text":"Two cities,"}`), reasoningAt(0, `{"text":" one clock."}`),
				reasoningAt(0, `{"signature":"`+testSignature+`"}`), blockStopAt(0),
				textAt(1, "Done."), blockStopAt(1),
				messageStop("end_turn"), stopUsage},
			want: []chat.Part{
				reasoningPart("Two cities,"), reasoningPart(" one clock."), signaturePart(testSignature), textPart("Done."),
			},
			final: chat.Final{StopReason: "end_turn", Usage: plainUsage},
		},
		{
			name: "redacted reasoning goes out whole when its block ends, even sent in pieces",
			frames: []frame{messageStart,
				redactedAt(0, testRedacted[:5]), redactedAt(0, testRedacted[5:]), blockStopAt(0),
				reasoningAt(1, `{"text":"ok"}`), reasoningAt(1, `{"signature":"sig2"}`), blockStopAt(1),
				textAt(2, "Done."), blockStopAt(2),
				messageStop("end_turn"), stopUsage},
			want: []chat.Part{
				redactedPart(testRedacted), reasoningPart("ok"), signaturePart("sig2"), textPart("Done."),
			},
			final: chat.Final{StopReason: "end_turn", Usage: plainUsage},
		},
		{
			name: "a redacted block the stream never closed goes out at messageStop",
			frames: []frame{messageStart, redactedAt(0, testRedacted), textAt(1, "Done."),
				messageStop("end_turn")},
			want:  []chat.Part{textPart("Done."), redactedPart(testRedacted)},
			final: chat.Final{StopReason: "end_turn"},
		},
		{
			name: "citations of a document and of a web page",
			frames: []frame{messageStart,
				blockDeltaAt(0, `{"citation":{"title":"Plants","sourceContent":[{"text":"The grass "},{"text":"is green."}],"location":{"documentChar":{"documentIndex":0,"start":0,"end":19}}}}`),
				textAt(0, "Grass is green."),
				blockDeltaAt(0, `{"citation":{"title":"Sky facts","source":"example.com","sourceContent":[{"text":"Sky: blue."}],"location":{"web":{"url":"https://example.com/sky","domain":"example.com"}}}}`),
				textAt(0, " The sky is blue."),
				blockDeltaAt(0, `{"citation":{"source":"https://example.org/sea","location":{"searchResultLocation":{"searchResultIndex":0,"start":0,"end":1}}}}`),
				blockDeltaAt(0, `{"citation":{}}`),
				blockStopAt(0), messageStop("end_turn"), stopUsage},
			want: []chat.Part{
				sourcePart("Plants", "", "The grass is green."), textPart("Grass is green."),
				sourcePart("Sky facts", "https://example.com/sky", "Sky: blue."), textPart(" The sky is blue."),
				sourcePart("", "https://example.org/sea", ""),
			},
			final: chat.Final{StopReason: "end_turn", Usage: plainUsage},
		},
		{
			name: "server tool blocks run at the provider and are not ours to call",
			frames: []frame{messageStart,
				blockStartAt(0, `{"toolUse":{"toolUseId":"srv_1","name":"nova_grounding","type":"server_tool_use"}}`),
				inputAt(0, `{"query":"sky"}`), blockStopAt(0),
				textAt(1, "Blue."), blockStopAt(1),
				messageStop("end_turn"), stopUsage},
			want:  []chat.Part{textPart("Blue.")},
			final: chat.Final{StopReason: "end_turn", Usage: plainUsage},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			srv, _ := fakeService(t, false, stream(t, tt.frames, nil))
			got, final, err := collectParts(t.Context(), newProvider(t, srv, nil), conversation)
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
	isolate(t)
	srv, _ := fakeService(t, false, stream(t, []frame{messageStart,
		blockStartAt(0, `{"toolUse":{"name":"x"}}`), blockStopAt(0), messageStop("tool_use")}, nil))
	_, _, err := collectParts(t.Context(), newProvider(t, srv, nil), conversation)
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
	Model:  modelID,
	System: "You are terse.",
	Tools: []chat.ToolSpec{
		{Name: "get_weather", Description: "Weather of a city.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer","maximum":10}},"required":["city"]}`)},
		{Name: "now"},
	},
	Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "hello"},
		{Role: chat.RoleAssistant, Text: "hi"},
		{Role: chat.RoleUser, Text: "Weather in Paris and Rome, and the time?"},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Two cities, one clock.", Signature: testSignature},
			{Kind: chat.BlockRedacted, Data: testRedacted},
			{Kind: chat.BlockText, Text: "Checking."},
			{Kind: chat.BlockText},
			{Kind: chat.BlockToolCall, CallID: "tooluse_01", Name: "get_weather",
				Input: json.RawMessage(`{"city": "Paris", "days": 12345678901234567890, "scale": 1.50, "metric": false, "note": null, "tags": []}`)},
			{Kind: chat.BlockToolCall, CallID: "tooluse_02", Name: "get_weather", Input: json.RawMessage(`{"city":"Rome"}`)},
			{Kind: chat.BlockToolCall, CallID: "tooluse_03", Name: "now"},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "tooluse_01", Name: "get_weather", Text: "18°C, sunny", DurationMillis: 12},
			{Kind: chat.BlockToolResult, CallID: "tooluse_02", Name: "get_weather", Text: "no such city", IsError: true},
			{Kind: chat.BlockToolResult, CallID: "tooluse_03", Name: "now", Text: "12:00"},
		}},
	},
}

// agentBody is the request agentPrompt makes with thinking on: the empty
// text block is left out, a call without input sends an empty object, a
// tool without a schema an object schema, numbers keep their literals and
// redacted reasoning its bytes.
var agentBody = `{
	"additionalModelRequestFields": {"thinking": {"budget_tokens": 2048, "type": "enabled"}},
	"inferenceConfig": {"maxTokens": 4096},
	"messages": [
		{"role": "user", "content": [{"text": "hello"}]},
		{"role": "assistant", "content": [{"text": "hi"}]},
		{"role": "user", "content": [{"text": "Weather in Paris and Rome, and the time?"}]},
		{"role": "assistant", "content": [
			{"reasoningContent": {"reasoningText": {"text": "Two cities, one clock.", "signature": "` + testSignature + `"}}},
			{"reasoningContent": {"redactedContent": "` + base64.StdEncoding.EncodeToString(testRedacted) + `"}},
			{"text": "Checking."},
			{"toolUse": {"toolUseId": "tooluse_01", "name": "get_weather",
				"input": {"city": "Paris", "days": 12345678901234567890, "scale": 1.50, "metric": false, "note": null, "tags": []}}},
			{"toolUse": {"toolUseId": "tooluse_02", "name": "get_weather", "input": {"city": "Rome"}}},
			{"toolUse": {"toolUseId": "tooluse_03", "name": "now", "input": {}}}
		]},
		{"role": "user", "content": [
			{"toolResult": {"toolUseId": "tooluse_01", "content": [{"text": "18°C, sunny"}]}},
			{"toolResult": {"toolUseId": "tooluse_02", "content": [{"text": "no such city"}], "status": "error"}},
			{"toolResult": {"toolUseId": "tooluse_03", "content": [{"text": "12:00"}]}}
		]}
	],
	"system": [{"text": "You are terse."}],
	"toolConfig": {"tools": [
		{"toolSpec": {"name": "get_weather", "description": "Weather of a city.", "inputSchema": {"json":
			{"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 10}}, "required": ["city"]}}}},
		{"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object"}}}}
	]}
}`

// decodeExact decodes JSON keeping number literals as they were written.
func decodeExact(t *testing.T, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

// TestStreamSendsToolsAndBlocks checks the body the SDK sends, value for
// value: the SDK chooses the order of members, not us.
func TestStreamSendsToolsAndBlocks(t *testing.T) {
	isolate(t)
	srv, got := fakeService(t, false, stream(t, []frame{messageStart, textDelta("ok"), messageStop("end_turn")}, nil))
	p := newProvider(t, srv, func(o *Options) {
		o.MaxTokens = 4096
		o.ThinkingBudget = 2048
	})
	if _, _, err := collectParts(t.Context(), p, agentPrompt); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	req := <-got
	if body, want := decodeExact(t, req.body), decodeExact(t, []byte(agentBody)); !reflect.DeepEqual(body, want) {
		t.Errorf("request body:\n%s\nwant:\n%s", req.body, agentBody)
	}
}

func TestStreamRefusesBlocksItCannotSend(t *testing.T) {
	tests := []struct {
		name   string
		prompt chat.Prompt
	}{
		{name: "tool input that is not JSON", prompt: chat.Prompt{Model: modelID, Messages: []chat.Message{
			{Role: chat.RoleAssistant, Blocks: []chat.Block{{Kind: chat.BlockToolCall, CallID: "c", Name: "n", Input: json.RawMessage(`{"a":`)}}},
		}}},
		{name: "tool input of two values", prompt: chat.Prompt{Model: modelID, Messages: []chat.Message{
			{Role: chat.RoleAssistant, Blocks: []chat.Block{{Kind: chat.BlockToolCall, CallID: "c", Name: "n", Input: json.RawMessage(`{} {}`)}}},
		}}},
		{name: "unknown block kind", prompt: chat.Prompt{Model: modelID, Messages: []chat.Message{
			{Role: chat.RoleUser, Blocks: []chat.Block{{Kind: "image", Text: "x"}}},
		}}},
		{name: "tool schema that is not JSON", prompt: chat.Prompt{Model: modelID,
			Tools:    []chat.ToolSpec{{Name: "n", InputSchema: json.RawMessage(`{`)}},
			Messages: []chat.Message{{Role: chat.RoleUser, Text: "q"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			srv, got := fakeService(t, false, stream(t, []frame{messageStart, messageStop("end_turn")}, nil))
			if _, _, err := collectParts(t.Context(), newProvider(t, srv, nil), tt.prompt); err == nil {
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
		wantMaxTokens int32
	}{
		{name: "off: max tokens left to the model", opts: Options{}},
		{name: "on: max tokens default to the budget plus room for the answer",
			opts: Options{ThinkingBudget: 2000}, wantMaxTokens: 2000 + DefaultAnswerTokens},
		{name: "on with max tokens above the budget", opts: Options{ThinkingBudget: 2000, MaxTokens: 2001}, wantMaxTokens: 2001},
		{name: "temperature 1 is allowed", opts: Options{ThinkingBudget: 2000, Temperature: &one}, wantMaxTokens: 3024},
		{name: "below the minimum", opts: Options{ThinkingBudget: 1023}, wantErr: "minimum"},
		{name: "negative", opts: Options{ThinkingBudget: -1}, wantErr: "minimum"},
		{name: "max tokens not above the budget", opts: Options{ThinkingBudget: 2000, MaxTokens: 2000}, wantErr: "larger than the thinking budget"},
		{name: "another temperature", opts: Options{ThinkingBudget: 2000, Temperature: &half}, wantErr: "temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			tt.opts.Region = "us-east-1"
			p, err := New(t.Context(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got int32
			if p.maxTokens != nil {
				got = *p.maxTokens
			}
			if got != tt.wantMaxTokens {
				t.Errorf("max tokens = %d, want %d", got, tt.wantMaxTokens)
			}
		})
	}
}
