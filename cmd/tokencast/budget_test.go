package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// budgetYAML is modelsYAML with a budget for the open mode's principal.
func budgetYAML(tokens, overshoot, chunk int) string {
	return modelsYAML + fmt.Sprintf(`  long: {ref: "openai:long"}
usage:
  budgets:
    - {principal: dev, period: day, tokens: %d}
  overshoot_tokens: %d
  budget_chunk_tokens: %d
`, tokens, overshoot, chunk)
}

// askCode asks with model and returns the request id, or the error's code
// and extensions.
func (s *server) askCode(t *testing.T, session, model string) (string, string, map[string]any) {
	t.Helper()
	status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": session, "message": "hi", "locale": "en", "model": model}})
	if status != http.StatusOK {
		t.Fatalf("ask: %d %+v", status, resp)
	}
	if len(resp.Errors) > 0 {
		code, _ := resp.Errors[0].Extensions["code"].(string)
		return "", code, resp.Errors[0].Extensions
	}
	return s.askModelData(t, resp.Data), "", nil
}

func (s *server) askModelData(t *testing.T, data []byte) string {
	t.Helper()
	const key = `"requestId":"`
	i := strings.Index(string(data), key)
	if i < 0 {
		t.Fatalf("ask answered %s", data)
	}
	rest := string(data)[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')]
}

// An answer that crosses its principal's budget while it streams is stopped
// at the provider (the fake sees its connection closed) and ends with END,
// stopReason BUDGET and the sample's #END_STREAM#, its text kept. The next
// ask is refused until the budget resets, or is raised by a reload.
func TestBudgetStopsAnAnswerMidStream(t *testing.T) {
	f := newOpenAIFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(budgetYAML(100, 10, 16)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "", map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"},
		"--config", cfgPath, "--coalesce-window", "0")
	c := subscribed(t, s, "s-budget", nil)
	req, code, _ := s.askCode(t, "s-budget", "long")
	if code != "" {
		t.Fatalf("ask refused with %s", code)
	}
	evs := c.answer("1", req)
	select {
	case <-f.longClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("the fake's stream was not closed")
	}
	end := evs[len(evs)-1]
	shown := text(evs)
	if end.Type != "END" || end.StopReason != "BUDGET" || end.Message != "#END_STREAM#" || shown == "" || len(shown) >= 2000*4 {
		t.Fatalf("the answer ended %+v after %d characters, want END, BUDGET, #END_STREAM# part-way", end, len(shown))
	}
	// The prompt is 7 tokens ("Answer in English (en)." and "hi"), a
	// token is 4 characters: the answer stops within the budget and its
	// overshoot.
	if tokens := 7 + len(shown)/4; tokens > 110 || tokens < 100-16 {
		t.Fatalf("the answer stopped at %d tokens, want within 100+10", tokens)
	}
	if turns := s.conversation(t, "", "s-budget"); len(turns) != 2 || turns[1].Text != shown {
		t.Fatalf("stored %+v, want the partial text", turns)
	}

	_, code, ext := s.askCode(t, "s-budget", "ok")
	tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
	if code != "BUDGET_EXCEEDED" || ext["resetsAt"] != tomorrow || ext["retryAfter"].(float64) <= 0 {
		t.Fatalf("an ask over budget: %s %v, want BUDGET_EXCEEDED until %s", code, ext, tomorrow)
	}

	// Raised in the file and reloaded with SIGHUP: asks are taken again.
	if err := os.WriteFile(cfgPath, []byte(budgetYAML(100_000, 10, 16)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, code, _ := s.askCode(t, "s-budget", "ok")
		if code == "" {
			if evs := c.answer("1", req); evs[len(evs)-1].Type != "END" || evs[len(evs)-1].StopReason != "stop" {
				t.Fatalf("after the reload: %s", types(evs))
			}
			break
		}
		if code != "BUDGET_EXCEEDED" || time.Now().After(deadline) {
			t.Fatalf("after the reload the ask is refused with %s", code)
		}
	}
	r := s.usageOf(t, "", "", 2, "model")
	long := rowOf(t, r, "openai:long")
	if long.Calls != 1 || long.EstimatedCalls != 1 || long.TotalTokens != 7+len(shown)/4 {
		t.Fatalf("usage of the stopped answer %+v, want what was streamed, %d tokens", long, 7+len(shown)/4)
	}
}

// Fifty answers of one principal at once against a small budget: together
// they spend no more than the budget, its overshoot and, per answer, one
// provider chunk (here a token) — the documented bound.
func TestConcurrentAnswersOfOnePrincipalHoldTheBudget(t *testing.T) {
	const (
		budget, overshoot, answers = 300, 20, 50
		bound                      = budget + overshoot + answers*1
	)
	f := newOpenAIFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(budgetYAML(budget, overshoot, 8)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "", map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"},
		"--config", cfgPath, "--coalesce-window", "50ms", "--workers", "64", "--ask-rate", "0", "--session-rate", "0", "--max-pending-conns-per-addr", "100")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ends := map[string]int{}
	for i := range answers {
		wg.Go(func() {
			session := fmt.Sprintf("s-fifty-%d", i)
			c := subscribed(t, s, session, nil)
			req, code, _ := s.askCode(t, session, "long")
			outcome := code
			if code == "" {
				evs := c.answer("1", req)
				outcome = evs[len(evs)-1].Type + "/" + evs[len(evs)-1].StopReason
			}
			mu.Lock()
			ends[outcome]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for outcome := range ends {
		if outcome != "END/BUDGET" && outcome != "BUDGET_EXCEEDED" {
			t.Fatalf("answers ended %v, want each stopped by the budget or refused", ends)
		}
	}
	r := s.usageOf(t, "", "", 1, "model")
	if r.Total.TotalTokens > bound || r.Total.TotalTokens < budget {
		t.Fatalf("50 answers spent %d tokens (%v), want the budget %d reached and at most %d", r.Total.TotalTokens, ends, budget, bound)
	}
}
