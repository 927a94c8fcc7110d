package demo

import (
	"context"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestMarkdownTriggerAnswersWithHostileMarkdown(t *testing.T) {
	p := &Provider{}
	prompt := chat.Prompt{Locale: "en", Messages: []chat.Message{{Role: chat.RoleUser, Text: "show " + MarkdownTrigger}}}
	var got strings.Builder
	if _, err := p.Stream(context.Background(), prompt, func(pt chat.Part) error { s := pt.Text; got.WriteString(s); return nil }); err != nil {
		t.Fatal(err)
	}
	if got.String() != MarkdownAnswer {
		t.Fatalf("streamed %q, want MarkdownAnswer", got.String())
	}
	for _, want := range []string{"# ", "\n- ", "```go\n", "](https://", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))"} {
		if !strings.Contains(MarkdownAnswer, want) {
			t.Errorf("MarkdownAnswer lacks %q", want)
		}
	}
}

func TestAnswerWithoutTriggerIsUnchanged(t *testing.T) {
	got := Answer(chat.Prompt{Locale: "en", Messages: []chat.Message{{Role: chat.RoleUser, Text: "Hi"}}})
	want := `Hello! This is answer 1 of this conversation, to: "Hi". I am the tokencast demo model answering in locale en; every word you see streamed to each subscriber of this session as it was generated.`
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// Each model call of the demo agent run reports what it read and wrote: the
// second reads the first's reasoning, calls and results, so it reads more.
func TestAgentRunReportsUsagePerStep(t *testing.T) {
	p := &Provider{}
	tools := []chat.ToolSpec{{Name: "calculator"}, {Name: "clock"}}
	prompt := chat.Prompt{Locale: "en", Tools: tools, Messages: []chat.Message{{Role: chat.RoleUser, Text: "work " + AgentTrigger}}}
	var step []chat.Block
	first, err := p.Stream(context.Background(), prompt, func(pt chat.Part) error {
		switch pt.Kind {
		case chat.PartReasoning:
			step = append(step, chat.Block{Kind: chat.BlockReasoning, Text: pt.Text})
		case chat.PartToolStart:
			step = append(step, chat.Block{Kind: chat.BlockToolCall, CallID: pt.CallID, Name: pt.Name})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	prompt.Messages = append(prompt.Messages,
		chat.Message{Role: chat.RoleAssistant, Blocks: step},
		chat.Message{Role: chat.RoleUser, Blocks: []chat.Block{
			{Kind: chat.BlockToolResult, CallID: AgentCalcCall, Name: "calculator", Text: "42"},
			{Kind: chat.BlockToolResult, CallID: AgentClockCall, Name: "clock", Text: `{"time": "2026-12-06T00:00:00Z"}`},
		}})
	second, err := p.Stream(context.Background(), prompt, func(chat.Part) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    chat.Final
		stop string
	}{{"first", first, "tool_use"}, {"second", second, "end_turn"}} {
		u := tc.f.Usage
		if tc.f.StopReason != tc.stop || u.InputTokens <= 0 || u.OutputTokens <= 0 || u.TotalTokens != u.InputTokens+u.OutputTokens {
			t.Errorf("%s call: stop %q, usage %+v", tc.name, tc.f.StopReason, u)
		}
	}
	if first.Usage.ReasoningTokens <= 0 {
		t.Errorf("the reasoning call reports no reasoning tokens: %+v", first.Usage)
	}
	if second.Usage.InputTokens <= first.Usage.InputTokens {
		t.Errorf("the second call read %d tokens, the first %d: the run's steps are not counted", second.Usage.InputTokens, first.Usage.InputTokens)
	}
}
