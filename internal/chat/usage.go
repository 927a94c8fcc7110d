package chat

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// UsageRecord is what one provider call cost, the unit usage is billed
// from: every call is recorded once, whatever the answer's end (a retried
// call, a fallback, each step of an agent run, a cancelled or failed call
// all spent tokens).
type UsageRecord struct {
	SessionID string `json:"sessionId"`
	RequestID string `json:"requestId"`
	// Attempt is the delivery of the request that made the call; Call
	// counts the attempt's provider calls from 1, Step the agent run's
	// model calls (a retry stays in its step).
	Attempt   uint64 `json:"attempt"`
	Call      int    `json:"call"`
	Step      int    `json:"step"`
	Principal string `json:"principal"`
	// Model is the model that was called, "provider:model-id".
	Model string    `json:"model"`
	At    time.Time `json:"at"`
	Usage Usage     `json:"usage"`
	// Estimated says the provider reported nothing and the counts are
	// tokencast's estimate (EstimateRunes).
	Estimated bool `json:"estimated,omitempty"`
	// Outcome is "OK", "CANCELLED" or the call's error code.
	Outcome string `json:"outcome"`
	// CostPicos is the call's cost in millionths of a millionth of the
	// server's currency, at the prices in force when it ended; Priced is
	// false for a model without a price (its tokens count, its cost is 0).
	CostPicos int64 `json:"costPicos,omitempty"`
	Priced    bool  `json:"priced,omitempty"`
}

// Outcomes of a provider call besides an error code.
const (
	OutcomeOK        = "OK"
	OutcomeCancelled = "CANCELLED"
	// OutcomeBudget: the call was stopped because the principal's budget
	// ran out while it streamed.
	OutcomeBudget = "BUDGET"
	// OutcomeLost: the worker making the call died mid-call; the attempt
	// that took the request over counted it from its OpenCall note.
	OutcomeLost = "WORKER_LOST"
)

// OpenCall is a provider call under way, noted before it is made: if its
// worker dies mid-call, the attempt that takes the request over finds the
// note and counts the call, which spent the prompt's tokens at least.
type OpenCall struct {
	// Record is what the call will be recorded as: its key, and the
	// estimate of what it has spent so far (Usage, Estimated).
	Record UsageRecord `json:"record"`
	// Held is what the call holds against budgets, by counter key.
	Held map[string]Spent `json:"held,omitempty"`
}

// Key names the call among every call ever made: a record published twice
// (a retried publish, a worker that restarts its bookkeeping) is one call.
func (r UsageRecord) Key() string {
	return AnswerKey(r.SessionID, r.RequestID) + "." + strconv.FormatUint(r.Attempt, 10) + "." + strconv.Itoa(r.Call)
}

// Day is the UTC day the call ended on, as YYYY-MM-DD.
func (r UsageRecord) Day() string { return r.At.UTC().Format(DayLayout) }

// DayLayout is how usage names a day.
const DayLayout = "2006-01-02"

// EstimateRunes is the estimate of the tokens in a text of n characters,
// for a provider that reports none: one token per four characters, rounded
// up, the rule of thumb the major providers document for English text.
func EstimateRunes(n int) int { return (n + 3) / 4 }

// EstimatePromptTokens is the estimate of everything a prompt sends a
// model: the system prompt, the messages' text, tool calls and results.
func EstimatePromptTokens(p Prompt) int {
	n := utf8.RuneCountInString(p.System)
	for _, m := range p.Messages {
		n += utf8.RuneCountInString(m.Text)
		for _, b := range m.Blocks {
			n += utf8.RuneCountInString(b.Text) + utf8.RuneCount(b.Input)
		}
	}
	return EstimateRunes(n)
}

// UsageTotals sums usage records.
type UsageTotals struct {
	Calls int64 `json:"calls"`
	// EstimatedCalls are the calls whose counts are estimates; Unpriced
	// the calls of a model without a price, whose cost counts nothing.
	EstimatedCalls   int64 `json:"estimatedCalls,omitempty"`
	UnpricedCalls    int64 `json:"unpricedCalls,omitempty"`
	InputTokens      int64 `json:"inputTokens"`
	OutputTokens     int64 `json:"outputTokens"`
	TotalTokens      int64 `json:"totalTokens"`
	ReasoningTokens  int64 `json:"reasoningTokens,omitempty"`
	CacheReadTokens  int64 `json:"cacheReadTokens,omitempty"`
	CacheWriteTokens int64 `json:"cacheWriteTokens,omitempty"`
	// Cost is in the server's currency.
	Cost Money `json:"cost"`
}

// AddRecord adds one call to the totals.
func (t *UsageTotals) AddRecord(r UsageRecord) {
	t.Calls++
	if r.Estimated {
		t.EstimatedCalls++
	}
	if !r.Priced {
		t.UnpricedCalls++
	}
	u := r.Usage
	t.InputTokens += int64(u.InputTokens)
	t.OutputTokens += int64(u.OutputTokens)
	t.TotalTokens += int64(u.TotalTokens)
	t.ReasoningTokens += int64(u.ReasoningTokens)
	t.CacheReadTokens += int64(u.CacheReadTokens)
	t.CacheWriteTokens += int64(u.CacheWriteTokens)
	t.Cost = t.Cost.Add(Picos(r.CostPicos))
}

// Add adds other totals to these.
func (t *UsageTotals) Add(o UsageTotals) {
	t.Calls += o.Calls
	t.EstimatedCalls += o.EstimatedCalls
	t.UnpricedCalls += o.UnpricedCalls
	t.InputTokens += o.InputTokens
	t.OutputTokens += o.OutputTokens
	t.TotalTokens += o.TotalTokens
	t.ReasoningTokens += o.ReasoningTokens
	t.CacheReadTokens += o.CacheReadTokens
	t.CacheWriteTokens += o.CacheWriteTokens
	t.Cost = t.Cost.Add(o.Cost)
}

// UsageRollup is the usage of one principal with one model on one day,
// kept up to date as records come in.
type UsageRollup struct {
	Day       string      `json:"day"`
	Principal string      `json:"principal"`
	Model     string      `json:"model"`
	Totals    UsageTotals `json:"totals"`
}
