package orchestrator

import (
	"context"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns what an answer tells the usage ledger: one record per
// provider call, whatever became of the call (a retry, a fallback, each
// step of an agent run, a call cancelled or failed mid-answer).

// UsageLedger keeps what provider calls cost; recording the same call
// (same record key) twice counts it once. It returns the record as kept,
// priced.
type UsageLedger interface {
	RecordUsage(ctx context.Context, rec chat.UsageRecord) (chat.UsageRecord, error)
}

// Budgets hold provider calls to their principals' budgets.
type Budgets interface {
	// Hold begins a call's hold on the budgets principal has with model.
	Hold(principal, model string) BudgetHold
	// Chunk is how many tokens a streaming call reserves at a time.
	Chunk() int64
}

// BudgetHold is one provider call's hold on its budgets.
type BudgetHold interface {
	// Reserve holds more tokens; false when a budget has no room left.
	Reserve(ctx context.Context, input, output int64) (bool, error)
	// Settle replaces what was held with what the call cost.
	Settle(ctx context.Context, rec chat.UsageRecord) error
}

// recordTimeout bounds the wait for a usage record to be stored; the
// answer may have been cancelled, the record is still due.
const recordTimeout = 30 * time.Second

// recordCall records what one provider call cost: the provider's own
// counts, or, when it reported none, an estimate marked as such for a call
// that reached the model (it answered, emitted, or was stopped while it
// ran). A call the provider refused outright (an HTTP error) cost nothing.
// The call's budget hold, if any, is settled to the record.
func (o *Orchestrator) recordCall(ctx context.Context, a *answer, c *callMeter, p chat.Prompt, final chat.Final, outcome string, stopped bool) {
	if o.cfg.Usage == nil {
		return
	}
	rec := chat.UsageRecord{
		SessionID: a.req.SessionID, RequestID: a.req.ID, Attempt: a.attempt,
		Call: int(a.calls.Add(1)), Step: a.step,
		Principal: a.req.Principal, Model: c.model, At: time.Now().UTC(),
		Usage: final.Usage, Outcome: outcome,
	}
	if final.Usage == (chat.Usage{}) && (outcome == chat.OutcomeOK || c.runes > 0 || stopped) {
		in, out := chat.EstimatePromptTokens(p), c.outputTokens()
		rec.Usage = chat.Usage{InputTokens: in, OutputTokens: out, TotalTokens: in + out}
		rec.Estimated = true
	}
	if rec.Usage.TotalTokens == 0 {
		rec.Usage.TotalTokens = rec.Usage.InputTokens + rec.Usage.OutputTokens
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	kept, err := o.cfg.Usage.RecordUsage(rctx, rec)
	if err != nil {
		a.log.Error("record a provider call's usage; it is not counted", "model", c.model, "call", rec.Call, "err", err)
		kept = rec
	}
	if c.hold != nil {
		if err := c.hold.Settle(rctx, kept); err != nil {
			a.log.Error("settle a provider call's budget hold", "model", c.model, "call", rec.Call, "err", err)
		}
	}
}

// callMeter follows one provider call: what it emitted (for an estimate
// if the provider reports no usage), and its hold on the budgets.
type callMeter struct {
	model string
	// runes counts the characters of text the call emitted.
	runes int
	// hold is nil without budgets; reserved is the output it holds.
	hold     BudgetHold
	chunk    int64
	reserved int64
	// overBudget is set when a reservation found no room: the call is
	// stopped, and the answer ends with stopReason BUDGET.
	overBudget bool
}

// meter begins following a call, and holds the prompt's tokens and a
// first chunk of output against the principal's budgets: false when they
// do not fit, and the call must not be made.
func (o *Orchestrator) meter(ctx context.Context, a *answer, model string, p chat.Prompt) (*callMeter, bool, error) {
	c := &callMeter{model: model}
	if o.cfg.Budgets == nil {
		return c, true, nil
	}
	c.hold, c.chunk = o.cfg.Budgets.Hold(a.req.Principal, model), o.cfg.Budgets.Chunk()
	// The prompt is spent as soon as the call is made; output is held as
	// it streams (part).
	ok, err := c.hold.Reserve(ctx, int64(chat.EstimatePromptTokens(p)), 0)
	return c, ok && err == nil, err
}

// part notes a part the call emits, first holding the tokens it takes
// past what is held already; false when the budget has no room for them.
func (c *callMeter) part(ctx context.Context, part chat.Part) (bool, error) {
	runes := utf8.RuneCountInString(part.Text)
	if c.hold != nil && runes > 0 {
		need := int64(chat.EstimateRunes(c.runes + runes))
		if need > c.reserved {
			// A chunk at a time; near the end of the budget, just what
			// this part needs.
			more := max(c.chunk, need-c.reserved)
			ok, err := c.hold.Reserve(ctx, 0, more)
			if err == nil && !ok && more > need-c.reserved {
				more = need - c.reserved
				ok, err = c.hold.Reserve(ctx, 0, more)
			}
			if err != nil {
				return false, err
			}
			if !ok {
				c.overBudget = true
				return false, nil
			}
			c.reserved += more
		}
	}
	c.runes += runes
	return true, nil
}

// outputTokens estimates the tokens the call emitted.
func (c *callMeter) outputTokens() int { return chat.EstimateRunes(c.runes) }

// callOutcome says how a provider call ended, for its usage record.
func callOutcome(ctx context.Context, c *callMeter, err error) string {
	cause := context.Cause(ctx)
	switch {
	case c.overBudget:
		return chat.OutcomeBudget
	case errors.Is(cause, errCancelled):
		return chat.OutcomeCancelled
	case errors.Is(cause, errRunTimeout):
		return chat.CodeRunTimeout
	case errors.Is(cause, chat.ErrSuperseded):
		return "SUPERSEDED"
	case ctx.Err() != nil:
		return chat.CodeUnavailable // shutting down
	case err == nil:
		return chat.OutcomeOK
	}
	return chat.ErrorCode(err)
}

// errBudget is the cause of a provider call stopped because the
// principal's budget ran out while it streamed.
var errBudget = errors.New("the budget ran out")
