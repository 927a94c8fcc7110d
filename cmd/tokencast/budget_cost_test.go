package main

import (
	"testing"
	"time"
)

// costBudgetYAML is modelsYAML with openai:long priced (a token of input
// costs twice one of output) and one cost budget for the open mode's
// principal.
func costBudgetYAML(budget string) string {
	return modelsYAML + `  long: {ref: "openai:long"}
usage:
  currency: USD
  prices:
    "openai:long": {input: "20", output: "10"}
  budgets:
    - ` + budget + `
  overshoot_tokens: 10
  budget_chunk_tokens: 16
`
}

// A budget in money holds like one in tokens. The long answer's prompt
// (7 tokens at 0.00002) leaves 0.001 of the budget of 0.00114 for 100
// output tokens at 0.00001, and the overshoot of 10 tokens is priced at
// the output price: the answer is stopped at the provider after exactly
// 110 output tokens (the fake sends a token per chunk), ends with END and
// stopReason BUDGET, and is recorded as the estimate it is, at its cost.
// The next ask under the budget is refused with BUDGET_EXCEEDED until the
// budget's period ends; an ask the budget does not cover is answered.
func TestCostBudgetStopsAnAnswerAndRefusesTheNextAsk(t *testing.T) {
	now := time.Now().UTC()
	tomorrow := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	nextMonth := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, budget string
		resets       time.Time
		// covered: whether the budget covers every model, the unpriced
		// ok among them, or openai:long alone.
		coversOK bool
	}{
		{"a day, every model", `{principal: dev, period: day, cost: "0.00114"}`, tomorrow, true},
		{"a month, one model", `{principal: "*", model: "openai:long", period: month, cost: "0.00114"}`, nextMonth, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := startWithUsage(t, costBudgetYAML(tc.budget), nil)
			c := subscribed(t, s, "s-cost", nil)
			req, code, _ := s.askCode(t, "s-cost", "long")
			if code != "" {
				t.Fatalf("the first ask refused with %s", code)
			}
			evs := c.answer("1", req)
			select {
			case <-f.longClosed:
			case <-time.After(10 * time.Second):
				t.Fatal("the fake's stream was not closed")
			}
			end, shown := evs[len(evs)-1], text(evs)
			if end.Type != "END" || end.StopReason != "BUDGET" || end.Message != "#END_STREAM#" || len(shown) != 110*4 {
				t.Fatalf("the answer ended %+v after %d characters, want END, BUDGET, #END_STREAM# after 110 tokens", end, len(shown))
			}

			_, code, ext := s.askCode(t, "s-cost", "long")
			retryAfter, _ := ext["retryAfter"].(float64)
			if code != "BUDGET_EXCEEDED" || ext["resetsAt"] != tc.resets.Format(time.RFC3339) ||
				retryAfter <= 0 || retryAfter > time.Until(tc.resets).Seconds()+1 {
				t.Fatalf("an ask over budget: %s %v, want BUDGET_EXCEEDED until %s", code, ext, tc.resets.Format(time.RFC3339))
			}
			calls := 1
			req, code, _ = s.askCode(t, "s-cost", "ok")
			switch {
			case tc.coversOK && code != "BUDGET_EXCEEDED":
				t.Fatalf("an ask of another model under the same budget: %q, want BUDGET_EXCEEDED", code)
			case !tc.coversOK && code != "":
				t.Fatalf("an ask of a model the budget does not cover refused with %s", code)
			case !tc.coversOK:
				if evs := c.answer("1", req); evs[len(evs)-1].Type != "END" || evs[len(evs)-1].StopReason != "stop" {
					t.Fatalf("the other model's answer: %s", types(evs))
				}
				calls++
			}

			// 7 × 0.00002 + 110 × 0.00001, exactly.
			r := s.usageOf(t, "", "", calls, "model")
			long := rowOf(t, r, "openai:long")
			if long.Calls != 1 || long.EstimatedCalls != 1 || long.InputTokens != 7 || long.OutputTokens != 110 || long.Cost != "0.00124" || r.Currency != "USD" {
				t.Fatalf("usage of the stopped answer %+v in %s, want 7+110 tokens estimated, 0.00124 USD", long, r.Currency)
			}
		})
	}
}
