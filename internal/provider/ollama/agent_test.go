package ollama

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
