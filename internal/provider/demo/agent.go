package demo

import (
	"context"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// AgentTrigger in a question makes the demo model run as an agent: it
// reasons, calls the built-in calculator and clock, and answers with what
// they said, so an agent run can be seen with no credentials.
const AgentTrigger = "[[demo:agent]]"

// AgentReasoning is the reasoning of the demo agent's first step.
const AgentReasoning = "The user asked for the demo agent run. I will work out 6*7 with the calculator and read the clock, then answer with what they say."

// AgentSignature signs the demo agent's reasoning, as providers sign theirs:
// stored and sent back, never shown.
const AgentSignature = "tokencast-demo-signature"

// The demo agent's tool calls.
const (
	AgentCalcCall  = "demo_calc_1"
	AgentClockCall = "demo_clock_1"
	AgentCalcInput = `{"expression": "6*7"}`
)

// question is the newest question of the prompt: its last user message
// written by a person (tool results are user messages with blocks).
func question(p chat.Prompt) string {
	for i := len(p.Messages) - 1; i >= 0; i-- {
		if m := p.Messages[i]; m.Role == chat.RoleUser && len(m.Blocks) == 0 {
			return m.Text
		}
	}
	return ""
}

// toolResults are the results the prompt ends with, by call id; nil when it
// does not end with results.
func toolResults(p chat.Prompt) map[string]chat.Block {
	if len(p.Messages) == 0 {
		return nil
	}
	last := p.Messages[len(p.Messages)-1]
	if last.Role != chat.RoleUser || len(last.Blocks) == 0 {
		return nil
	}
	out := make(map[string]chat.Block)
	for _, b := range last.Blocks {
		if b.Kind == chat.BlockToolResult {
			out[b.CallID] = b
		}
	}
	return out
}

func offered(p chat.Prompt, name string) bool {
	for _, t := range p.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// agentStep streams one step of the demo agent run: the reasoning and the
// tool calls first, the answer once the results are in.
func (p *Provider) agentStep(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	if err := sleep(ctx, p.TTFT); err != nil {
		return chat.Final{}, err
	}
	results := toolResults(prompt)
	if results != nil {
		text := "The calculator says 6*7 = " + results[AgentCalcCall].Text + ". The clock says " + results[AgentClockCall].Text +
			". That was the demo agent run: reasoning, two tool calls, and this answer."
		if r := results[AgentCalcCall]; r.IsError {
			text = "The calculator could not answer: " + r.Text + "."
		}
		n, err := p.words(ctx, text, chat.PartText, emit)
		return chat.Final{Usage: usage(prompt, n, 0), StopReason: "end_turn"}, err
	}
	if !offered(prompt, "calculator") || !offered(prompt, "clock") {
		n, err := p.words(ctx, "The demo agent run needs the built-in calculator and clock tools, and this model is not offered them.", chat.PartText, emit)
		return chat.Final{Usage: usage(prompt, n, 0), StopReason: "end_turn"}, err
	}
	n, err := p.words(ctx, AgentReasoning, chat.PartReasoning, emit)
	if err != nil {
		return chat.Final{}, err
	}
	parts := []chat.Part{
		{Kind: chat.PartSignature, Text: AgentSignature},
		{Kind: chat.PartToolStart, CallID: AgentCalcCall, Name: "calculator"},
		{Kind: chat.PartToolDelta, CallID: AgentCalcCall, Text: `{"expression": `},
		{Kind: chat.PartToolDelta, CallID: AgentCalcCall, Text: `"6*7"}`},
		{Kind: chat.PartToolEnd, CallID: AgentCalcCall},
		{Kind: chat.PartToolStart, CallID: AgentClockCall, Name: "clock"},
		{Kind: chat.PartToolDelta, CallID: AgentClockCall, Text: `{}`},
		{Kind: chat.PartToolEnd, CallID: AgentClockCall},
	}
	for _, part := range parts {
		if err := sleep(ctx, p.TokenInterval); err != nil {
			return chat.Final{}, err
		}
		if err := emit(part); err != nil {
			return chat.Final{}, err
		}
	}
	return chat.Final{Usage: usage(prompt, n+4, n), StopReason: "tool_use"}, nil
}

// usage is a demo model call's usage: its prompt's words in, output
// tokens out, of which reasoning were reasoning.
func usage(prompt chat.Prompt, output, reasoning int) chat.Usage {
	in := inputTokens(prompt)
	return chat.Usage{InputTokens: in, OutputTokens: output, TotalTokens: in + output, ReasoningTokens: reasoning}
}

// words streams text word by word as parts of kind k, and counts them.
func (p *Provider) words(ctx context.Context, text string, k chat.PartKind, emit func(chat.Part) error) (int, error) {
	tokens := Tokens(text)
	for i, tok := range tokens {
		if i > 0 {
			if err := sleep(ctx, p.TokenInterval); err != nil {
				return i, err
			}
		}
		if err := emit(chat.Part{Kind: k, Text: tok}); err != nil {
			return i, err
		}
	}
	return len(tokens), nil
}

// isAgentRun reports whether the prompt asks for the demo agent run.
func isAgentRun(p chat.Prompt) bool { return strings.Contains(question(p), AgentTrigger) }
