package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/graph/model"
)

// usageOfCall is what the usage of one provider call must be recorded as.
type usageOfCall struct {
	in, out   int
	estimated bool
}

// The prompt of a question "hi" in English, as tokencast estimates it
// (a token per 4 characters of "Answer in English (en)." and "hi"), and
// the output of "The fake ", the two tokens every pause-mid and fail-mid
// fake sends before it stops.
const (
	estimatedHiPrompt  = 7
	estimatedTwoTokens = 3
)

// providerUsageYAML names one provider's models by what they do; the
// agent model may call the calculator.
func providerUsageYAML(provider, retried, failing string) string {
	return fmt.Sprintf(`default_model: ok
system_prompt: "Answer in {{.Language}} ({{.Locale}})."
models:
  ok: {ref: "%[1]s:ok"}
  retried: {ref: "%[1]s:%[2]s"}
  paused: {ref: "%[1]s:pause-mid"}
  failing: {ref: "%[1]s:%[3]s"}
  agent: {ref: "%[1]s:agent", tools: [builtin.calculator]}
`, provider, retried, failing)
}

// For each provider fake, through the running server: every provider call
// is recorded once, with the token counts the fake put on the wire in the
// provider's own format — a complete answer, a call refused with a 429 or
// 503 and retried, each model call of an agent run that used a tool, a
// call cancelled mid-answer and one that failed mid-answer. A call
// stopped before the provider reported its usage is an estimate, marked;
// one whose provider reported as its stream began (Anthropic's
// message_start) counts the input as reported and the output streamed
// since as estimated, marked.
func TestUsageOfEveryProviderFake(t *testing.T) {
	whole := strings.Join(fakeAnswer, "")
	estimatedStop := usageOfCall{in: estimatedHiPrompt, out: estimatedTwoTokens, estimated: true}
	cases := []struct {
		provider string
		// fake starts the provider's fake: the server's environment, and
		// where the fake tells of a request the client abandoned.
		fake             func(t *testing.T) (map[string]string, <-chan string)
		retried, failing string // the fake's model ids
		answer           wireUsage
		failCode         string
		cancelled        usageOfCall
		failed           usageOfCall
	}{
		{
			provider: "openai",
			fake: func(t *testing.T) (map[string]string, <-chan string) {
				f := newOpenAIFake(t)
				return map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"}, f.canceled
			},
			retried: "throttle-once", failing: "fail-mid", answer: wireUsage{in: 11, out: 4},
			// An OpenAI stream reports usage in its last chunk only.
			failCode: "PROVIDER_ERROR", cancelled: estimatedStop, failed: estimatedStop,
		},
		{
			provider: "anthropic",
			fake: func(t *testing.T) (map[string]string, <-chan string) {
				f := newAnthropicFake(t)
				return f.env(), f.canceled
			},
			retried: "throttle-once", failing: "fail-mid", answer: anthropicUsage,
			// message_start reported the input and a first output token
			// before the stop; the output streamed since is estimated.
			failCode:  "PROVIDER_UNAVAILABLE",
			cancelled: usageOfCall{in: anthropicUsage.in, out: estimatedTwoTokens, estimated: true},
			failed:    usageOfCall{in: anthropicUsage.in, out: estimatedTwoTokens, estimated: true},
		},
		{
			provider: "bedrock",
			fake: func(t *testing.T) (map[string]string, <-chan string) {
				f := newBedrockFake(t)
				return awsEnv(t, f), f.canceled
			},
			retried: "throttle-once", failing: "fail-mid-serviceUnavailableException", answer: wireUsage{in: 21, out: 4},
			// Bedrock's metadata event comes last.
			failCode: "PROVIDER_UNAVAILABLE", cancelled: estimatedStop, failed: estimatedStop,
		},
		{
			provider: "ollama",
			fake: func(t *testing.T) (map[string]string, <-chan string) {
				f := newOllamaFake(t)
				return f.env(), f.canceled
			},
			retried: "busy-once", failing: "fail-mid", answer: ollamaUsage,
			// Ollama's counts come in its last line.
			failCode: "PROVIDER_ERROR", cancelled: estimatedStop, failed: estimatedStop,
		},
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			env, canceled := tc.fake(t)
			cfgPath := filepath.Join(t.TempDir(), "models.yaml")
			if err := os.WriteFile(cfgPath, []byte(providerUsageYAML(tc.provider, tc.retried, tc.failing)), 0o600); err != nil {
				t.Fatal(err)
			}
			s := start(t, "", env, "--config", cfgPath, "--coalesce-window", "0", "--provider-retries", "2", "--retry-budget", "5s")

			for _, m := range []string{"ok", "retried"} {
				c := subscribed(t, s, "s-"+m, nil)
				evs := c.answer("1", s.askModel(t, "s-"+m, "hi", "en", m))
				end := evs[len(evs)-1]
				if end.Type != "END" || text(evs) != whole || end.Usage == nil || end.Usage.InputTokens != tc.answer.in || end.Usage.OutputTokens != tc.answer.out {
					t.Fatalf("%s: %s %q, END %+v; want the fake's answer and its usage %+v", m, types(evs), text(evs), end.Usage, tc.answer)
				}
			}
			checkAgentRunUsage(t, s)

			c := subscribed(t, s, "s-paused", nil)
			req := s.askModel(t, "s-paused", "hi", "en", "paused")
			c.next("1") // START
			c.next("1") // "The "
			c.next("1") // "fake ": the fake pauses
			if !s.cancelAnswer(t, "s-paused", req) {
				t.Fatal("cancel said the answer had ended")
			}
			select {
			case <-canceled:
			case <-time.After(10 * time.Second):
				t.Fatal("the provider's request was not abandoned")
			}
			if evs := c.answer("1", req); evs[len(evs)-1].Type != "CANCELLED" {
				t.Fatalf("paused: %s, want CANCELLED", types(evs))
			}

			c = subscribed(t, s, "s-failing", nil)
			evs := c.answer("1", s.askModel(t, "s-failing", "hi", "en", "failing"))
			if last := evs[len(evs)-1]; last.Type != "ERROR" || last.Error.Code != tc.failCode || !strings.HasPrefix(text(evs), strings.Join(fakeAnswer[:2], "")) {
				t.Fatalf("failing: %s %q %+v, want ERROR %s after two tokens", types(evs), text(evs), last.Error, tc.failCode)
			}

			// ok 1, retried 2 (refused, then answered), agent 2, paused 1,
			// failing 1.
			r := s.usageOf(t, "", "", 7, "model")
			if r.Total.Calls != 7 {
				t.Fatalf("%d calls recorded, want 7: %+v", r.Total.Calls, r.Rows)
			}
			for _, want := range []struct {
				id    string
				calls int
				usage usageOfCall
			}{
				{"ok", 1, usageOfCall{in: tc.answer.in, out: tc.answer.out}},
				{tc.retried, 2, usageOfCall{in: tc.answer.in, out: tc.answer.out}},
				{"agent", 2, usageOfCall{in: agentCallUsage.in + agentAnswerUsage.in, out: agentCallUsage.out + agentAnswerUsage.out}},
				{"pause-mid", 1, tc.cancelled},
				{tc.failing, 1, tc.failed},
			} {
				ref := tc.provider + ":" + want.id
				got := rowOf(t, r, ref)
				if !recorded(got, want.calls, want.usage) {
					t.Errorf("%s recorded %+v, want %d calls of %+v", ref, got, want.calls, want.usage)
				}
			}
		})
	}
}

// recorded reports whether a usage row is calls calls that sum to u.
func recorded(got model.UsageTotals, calls int, u usageOfCall) bool {
	estimated := 0
	if u.estimated {
		estimated = 1
	}
	return got.Calls == calls && got.InputTokens == u.in && got.OutputTokens == u.out && got.TotalTokens == u.in+u.out && got.EstimatedCalls == estimated
}

// checkAgentRunUsage runs the fake's agent model: it asks for the
// calculator, reads its 42 and answers. Each model call's STEP carries
// what the fake reported for that call, and END their sum.
func checkAgentRunUsage(t *testing.T, s *server) {
	t.Helper()
	c := agentSubscribed(t, s, "s-agent", "", "")
	evs := c.agentEvents(s.askModel(t, "s-agent", "what is 6*7?", "en", "agent"), nil)
	var steps []wireUsage
	var answer strings.Builder
	var input, result string
	for _, ev := range evs {
		switch ev.Type {
		case "TOOL_CALL":
			if ev.ToolCall.Input != nil {
				input = *ev.ToolCall.Input
			}
		case "TOOL_RESULT":
			result = ev.ToolResult.Output
		case "DELTA":
			answer.WriteString(ev.Message)
		case "STEP":
			if ev.Usage == nil {
				t.Fatalf("STEP without its usage: %s", agentTypes(evs))
			}
			steps = append(steps, wireUsage{in: ev.Usage.InputTokens, out: ev.Usage.OutputTokens})
		}
	}
	end := evs[len(evs)-1]
	if end.Type != "END" || input != agentInput || result != "42" || answer.String() != agentAnswerText {
		t.Fatalf("agent run %s: input %q, result %q, answer %q", agentTypes(evs), input, result, answer.String())
	}
	if len(steps) != 2 || steps[0] != agentCallUsage || steps[1] != agentAnswerUsage {
		t.Fatalf("steps reported %+v, want %+v then %+v", steps, agentCallUsage, agentAnswerUsage)
	}
	if end.Usage == nil || end.Usage.InputTokens != agentCallUsage.in+agentAnswerUsage.in || end.Usage.OutputTokens != agentCallUsage.out+agentAnswerUsage.out {
		t.Fatalf("END usage %+v, want the sum of the steps", end.Usage)
	}
}
