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

// UsageLedger keeps what provider calls cost, and notes the calls under
// way so that one whose worker dies mid-call is counted all the same.
type UsageLedger interface {
	// RecordUsage records a call and returns the record as kept, priced;
	// recording the same call (same record key) again counts it once,
	// and fresh is false then.
	RecordUsage(ctx context.Context, rec chat.UsageRecord) (kept chat.UsageRecord, fresh bool, err error)
	// NoteCall writes the note of a call as it is made and updates it as
	// it streams; CloseCall deletes it once the call is recorded. Neither
	// waits: the note leaves before the call's request does.
	NoteCall(oc chat.OpenCall)
	CloseCall(oc chat.OpenCall)
	// OpenCalls lists the notes of an answer's calls still open.
	OpenCalls(ctx context.Context, session, request string) ([]chat.OpenCall, error)
}

// Budgets hold provider calls to their principals' budgets.
type Budgets interface {
	// Hold begins a call's hold on the budgets principal has with model.
	Hold(principal, model string) BudgetHold
	// Chunk is how many tokens a streaming call reserves at a time.
	Chunk() int64
	// Release settles what a call held (BudgetHold.Held) that its worker
	// did not live to settle, to what the call is recorded to have cost.
	Release(ctx context.Context, held map[string]chat.Spent, rec chat.UsageRecord) error
}

// BudgetHold is one provider call's hold on its budgets.
type BudgetHold interface {
	// Reserve holds more tokens; false when a budget has no room left.
	Reserve(ctx context.Context, input, output int64) (bool, error)
	// Settle replaces what was held with what the call cost.
	Settle(ctx context.Context, rec chat.UsageRecord) error
	// Held is what the hold holds, by budget counter.
	Held() map[string]chat.Spent
}

// recordTimeout bounds the wait for a usage record to be stored; the
// answer may have been cancelled, the record is still due.
const recordTimeout = 30 * time.Second

// recordCall records what one provider call cost: the provider's own
// counts, or, when it reported none, an estimate marked as such for a call
// that reached the model (it answered, emitted, or was stopped while it
// ran). A call the provider refused outright (an HTTP error) cost nothing.
// The call's note is deleted once it is recorded, then its budget hold,
// if any, is settled to the record.
func (o *Orchestrator) recordCall(ctx context.Context, a *answer, c *callMeter, final chat.Final, outcome string, stopped bool) {
	if o.cfg.Usage == nil {
		return
	}
	rec := c.open.Record
	rec.At, rec.Usage, rec.Outcome, rec.Estimated = time.Now().UTC(), final.Usage, outcome, false
	switch out := c.outputTokens(); {
	case final.Usage == (chat.Usage{}) && (outcome == chat.OutcomeOK || c.runes > 0 || stopped):
		in := c.open.Record.Usage.InputTokens // the prompt's estimate, from the note
		rec.Usage = chat.Usage{InputTokens: in, OutputTokens: out, TotalTokens: in + out}
		rec.Estimated = true
	case outcome != chat.OutcomeOK && out > rec.Usage.OutputTokens:
		// Stopped after the provider reported as its stream began
		// (Anthropic's message_start) and before it reported again: what
		// streamed since counts, estimated.
		rec.Usage.TotalTokens += out - rec.Usage.OutputTokens
		rec.Usage.OutputTokens = out
		rec.Estimated = true
	}
	// A provider that reports no total, or a total the estimate outgrew.
	rec.Usage.TotalTokens = max(rec.Usage.TotalTokens, rec.Usage.InputTokens+rec.Usage.OutputTokens)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	kept, fresh, err := o.cfg.Usage.RecordUsage(rctx, rec)
	if err != nil {
		// The note stays: the call is counted from it, should another
		// attempt take the request over.
		a.log.Error("record a provider call's usage; it is not counted", "model", c.model, "call", rec.Call, "err", err)
		kept = rec
	} else {
		o.cfg.Usage.CloseCall(c.open)
	}
	if err == nil && !fresh {
		// Recorded already: a newer attempt took the request over while
		// this one was still making the call, took it for lost, and
		// counted and released it from its note.
		return
	}
	if c.hold != nil {
		if err := c.hold.Settle(rctx, kept); err != nil {
			a.log.Error("settle a provider call's budget hold", "model", c.model, "call", rec.Call, "err", err)
		}
	}
}

// settleLost counts the provider calls left open by the request's attempts
// older than before: their workers died mid-call, after the prompt was
// sent. Each is recorded from its note (the prompt's estimate and the
// output noted so far), unless it was recorded after all (the note
// outlived its record), and what it held against budgets is released.
func (o *Orchestrator) settleLost(ctx context.Context, a *answer, before uint64) {
	if o.cfg.Usage == nil {
		return
	}
	open, err := o.cfg.Usage.OpenCalls(ctx, a.req.SessionID, a.req.ID)
	if err != nil {
		a.log.Error("read the calls earlier attempts left open; they are counted on the next takeover", "err", err)
		return
	}
	for _, oc := range open {
		if oc.Record.Attempt >= before {
			continue // this attempt's own, or a newer one's
		}
		rec := oc.Record
		rec.At, rec.Outcome, rec.Estimated = time.Now().UTC(), chat.OutcomeLost, true
		rec.Usage.TotalTokens = rec.Usage.InputTokens + rec.Usage.OutputTokens
		kept, fresh, err := o.cfg.Usage.RecordUsage(ctx, rec)
		if err != nil {
			a.log.Error("record a call an earlier attempt left open", "call", rec.Key(), "err", err)
			continue
		}
		o.cfg.Usage.CloseCall(oc)
		if !fresh {
			continue // recorded by its own attempt, which settled its hold
		}
		a.log.Warn("counted a provider call whose worker died mid-call, from its note", "call", rec.Key(), "model", rec.Model,
			"inputTokens", rec.Usage.InputTokens, "outputTokens", rec.Usage.OutputTokens)
		if o.cfg.Budgets != nil && len(oc.Held) > 0 {
			if err := o.cfg.Budgets.Release(ctx, oc.Held, kept); err != nil {
				a.log.Error("release what a lost call held against budgets", "call", rec.Key(), "err", err)
			}
		}
	}
}

// callMeter follows one provider call: what it emitted (for an estimate
// if the provider reports no usage), its note, and its hold on the budgets.
type callMeter struct {
	model string
	// runes counts the characters of text the call emitted.
	runes int
	// open is the call's note, as last written; ledger keeps it (nil
	// without usage), noted is runes when it was last written.
	open   chat.OpenCall
	ledger UsageLedger
	noted  int
	// hold is nil without budgets; reserved is the output it holds.
	hold     BudgetHold
	chunk    int64
	reserved int64
	// overBudget is set when a reservation found no room: the call is
	// stopped, and the answer ends with stopReason BUDGET.
	overBudget bool
}

// noteEvery is how many characters of output a call emits between updates
// of its note (about 64 tokens): the estimate of a call whose worker dies
// falls short by at most that.
const noteEvery = 256

// meter begins following a call: it holds the prompt's tokens against the
// principal's budgets (false when they do not fit, and the call must not
// be made), numbers the call, and writes its note.
func (o *Orchestrator) meter(ctx context.Context, a *answer, model string, p chat.Prompt) (*callMeter, bool, error) {
	c := &callMeter{model: model}
	input := chat.EstimatePromptTokens(p)
	if o.cfg.Budgets != nil {
		c.hold, c.chunk = o.cfg.Budgets.Hold(a.req.Principal, model), o.cfg.Budgets.Chunk()
		// The prompt is spent as soon as the call is made; output is
		// held as it streams (part).
		ok, err := c.hold.Reserve(ctx, int64(input), 0)
		if err != nil || !ok {
			return c, false, err
		}
	}
	if o.cfg.Usage == nil {
		return c, true, nil
	}
	c.ledger = o.cfg.Usage
	c.open = chat.OpenCall{Record: chat.UsageRecord{
		SessionID: a.req.SessionID, RequestID: a.req.ID, Attempt: a.attempt,
		Call: int(a.calls.Add(1)), Step: a.step,
		Principal: a.req.Principal, Model: model, At: time.Now().UTC(),
		Usage: chat.Usage{InputTokens: input}, Estimated: true,
	}}
	if c.hold != nil {
		c.open.Held = c.hold.Held()
	}
	c.ledger.NoteCall(c.open)
	return c, true, nil
}

// part notes a part the call emits, first holding the tokens it takes
// past what is held already; false when the budget has no room for them.
func (c *callMeter) part(ctx context.Context, part chat.Part) (bool, error) {
	runes := utf8.RuneCountInString(part.Text)
	held := false
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
			held = true
		}
	}
	c.runes += runes
	if c.ledger != nil && (held || c.runes-c.noted >= noteEvery) {
		c.noted = c.runes
		c.open.Record.Usage.OutputTokens = c.outputTokens()
		if held {
			c.open.Held = c.hold.Held()
		}
		c.ledger.NoteCall(c.open)
	}
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
