package openai

import (
	"bytes"
	"encoding/json"
	"os"
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
