// Package demo is the built-in model: no credentials, deterministic text that
// depends on the question, the locale and the conversation so far.
package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// FailTrigger in a question makes the demo model fail after a few tokens, so
// the error path can be seen without a real provider.
const FailTrigger = "[[demo:error]]"

// MarkdownTrigger in a question makes the demo model answer with MarkdownAnswer,
// so a client can show Markdown, code highlighting and that hostile markup in
// an answer stays inert.
const MarkdownTrigger = "[[demo:markdown]]"

// MarkdownAnswer is the demo answer to a question containing MarkdownTrigger:
// a heading, a list, a fenced Go block, a link, and two strings a renderer
// must never turn into running script.
const MarkdownAnswer = "# Markdown demo\n\n" +
	"The demo model can stream **formatted** text:\n\n" +
	"- a list item with `inline code`\n" +
	"- a [link to the Go site](https://go.dev/)\n" +
	"- a fenced block below\n\n" +
	"```go\n" +
	"package main\n\n" +
	"import \"fmt\"\n\n" +
	"func main() {\n" +
	"\tfmt.Println(\"streamed by tokencast\")\n" +
	"}\n" +
	"```\n\n" +
	"Hostile markup stays inert: <img src=x onerror=alert(1)> and [click](javascript:alert(1)) and <script>alert(2)</script> end."

// Provider streams the demo answer word by word.
type Provider struct {
	// TTFT is the delay before the first token.
	TTFT time.Duration
	// TokenInterval is the delay between tokens.
	TokenInterval time.Duration
	// Repeat makes answers this many times longer (load and slow-consumer
	// tests); 0 or 1 gives the answer once.
	Repeat int
}

var greetings = map[string]string{
	"en": "Hello", "fr": "Bonjour", "de": "Hallo", "es": "Hola",
	"it": "Ciao", "pt": "Olá", "ja": "こんにちは",
}

// Answer returns the exact text the demo model gives for a prompt.
func Answer(p chat.Prompt) string {
	var questions []string
	for _, m := range p.Messages {
		if m.Role == chat.RoleUser && len(m.Blocks) == 0 {
			questions = append(questions, m.Text)
		}
	}
	if len(questions) == 0 {
		questions = []string{""}
	}
	if strings.Contains(questions[len(questions)-1], MarkdownTrigger) {
		return MarkdownAnswer
	}
	greeting, ok := greetings[chat.Language(p.Locale)]
	if !ok {
		greeting = greetings["en"]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s! This is answer %d of this conversation, to: %q.", greeting, len(questions), questions[len(questions)-1])
	if len(questions) > 1 {
		fmt.Fprintf(&b, " Before that you asked: %q.", questions[len(questions)-2])
	}
	fmt.Fprintf(&b, " I am the tokencast demo model answering in locale %s; every word you see streamed to each subscriber of this session as it was generated.", p.Locale)
	return b.String()
}

// Tokens splits text the way the demo streams it: each word with the space
// that follows it.
func Tokens(text string) []string {
	var out []string
	for len(text) > 0 {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			out = append(out, text)
			break
		}
		out = append(out, text[:i+1])
		text = text[i+1:]
	}
	return out
}

// Stream emits the demo answer, honouring ctx between tokens.
func (p *Provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	if isAgentRun(prompt) {
		return p.agentStep(ctx, prompt, emit)
	}
	text := Answer(prompt)
	if p.Repeat > 1 {
		text = strings.TrimSuffix(strings.Repeat(text+" ", p.Repeat), " ")
	}
	tokens := Tokens(text)
	fail := len(prompt.Messages) > 0 && strings.Contains(prompt.Messages[len(prompt.Messages)-1].Text, FailTrigger)
	input := inputTokens(prompt)
	if err := sleep(ctx, p.TTFT); err != nil {
		return chat.Final{}, err
	}
	for i, tok := range tokens {
		if i > 0 {
			if err := sleep(ctx, p.TokenInterval); err != nil {
				return chat.Final{}, err
			}
		}
		if fail && i == 3 {
			return chat.Final{}, &chat.Error{Code: chat.CodeProvider, Message: "the demo model failed as asked"}
		}
		if err := emit(chat.TextPart(tok)); err != nil {
			return chat.Final{}, err
		}
	}
	return chat.Final{
		Usage:      chat.Usage{InputTokens: input, OutputTokens: len(tokens), TotalTokens: input + len(tokens)},
		StopReason: "end_turn",
	}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// inputTokens is what the demo model counts as a prompt's input tokens:
// its words, those of an agent run's blocks (text, reasoning, tool input
// and output) included.
func inputTokens(prompt chat.Prompt) int {
	n := len(strings.Fields(prompt.System))
	for _, m := range prompt.Messages {
		n += len(strings.Fields(m.Text))
		for _, b := range m.Blocks {
			n += len(strings.Fields(b.Text)) + len(strings.Fields(string(b.Input)))
		}
	}
	return n
}
