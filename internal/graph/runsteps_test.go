package graph

import (
	"encoding/json"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// A stored run as the conversation shows it: per model call its reasoning
// (never a signature or redacted bytes), text, tool calls with the results
// that followed, and the sources it cited.
func TestRunStepsShowWhatEachModelCallDid(t *testing.T) {
	run := []chat.Message{
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockReasoning, Text: "Add.", Signature: "sig=="},
			{Kind: chat.BlockRedacted, Data: []byte{0, 1}},
			{Kind: chat.BlockToolCall, CallID: "c1", Name: "calculator", Input: json.RawMessage(`{"expression":"1+2"}`)},
			{Kind: chat.BlockToolCall, CallID: "c2", Name: "clock", Input: json.RawMessage(`{}`)},
		}},
		{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: "c1", Name: "calculator", Text: "3", DurationMillis: 0.412},
		}},
		{Role: chat.RoleAssistant, Blocks: []chat.Block{
			{Kind: chat.BlockText, Text: "It is 3."},
			{Kind: chat.BlockSource, Source: &chat.Source{Title: "Sums", URL: "https://example.com/sums"}},
			{Kind: chat.BlockSource, Source: &chat.Source{Text: "a passage"}},
		}},
	}
	steps := runSteps(run)
	if len(steps) != 2 {
		t.Fatalf("%d steps, want 2", len(steps))
	}
	first, second := steps[0], steps[1]
	if first.Reasoning != "Add." || first.Text != "" || len(first.Sources) != 0 || len(first.ToolCalls) != 2 {
		t.Fatalf("first step %+v", first)
	}
	c1, c2 := first.ToolCalls[0], first.ToolCalls[1]
	if c1.ID != "c1" || c1.Input != `{"expression":"1+2"}` || c1.Output == nil || *c1.Output != "3" || c1.DurationMs == nil || *c1.DurationMs != 0.412 {
		t.Errorf("the answered call %+v", c1)
	}
	if c2.ID != "c2" || c2.Output != nil || c2.DurationMs != nil {
		t.Errorf("the call without a result %+v", c2)
	}
	if second.Text != "It is 3." || len(second.Sources) != 2 {
		t.Fatalf("second step %+v", second)
	}
	s1, s2 := second.Sources[0], second.Sources[1]
	if s1.Title == nil || *s1.Title != "Sums" || s1.URL == nil || *s1.URL != "https://example.com/sums" || s1.Text != nil {
		t.Errorf("first source %+v", s1)
	}
	if s2.Title != nil || s2.URL != nil || s2.Text == nil || *s2.Text != "a passage" {
		t.Errorf("second source %+v", s2)
	}
}
