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
