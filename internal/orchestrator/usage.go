package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns what an answer tells the usage ledger: one record per
// provider call, whatever became of the call (a retry, a fallback, each
// step of an agent run, a call cancelled or failed mid-answer).

// UsageLedger keeps what provider calls cost; recording the same call
// (same record key) twice counts it once.
type UsageLedger interface {
	RecordUsage(ctx context.Context, rec chat.UsageRecord) error
}

// recordTimeout bounds the wait for a usage record to be stored; the
// answer may have been cancelled, the record is still due.
const recordTimeout = 30 * time.Second

// recordCall records what one provider call cost: the provider's own
// counts, or, when it reported none, an estimate marked as such for a call
// that reached the model (it answered, emitted, or was stopped while it
// ran). A call the provider refused outright (an HTTP error) cost nothing.
func (o *Orchestrator) recordCall(ctx context.Context, a *answer, model string, p chat.Prompt, final chat.Final, err error, emitted string, stopped bool) {
	if o.cfg.Usage == nil {
		return
	}
	rec := chat.UsageRecord{
		SessionID: a.req.SessionID, RequestID: a.req.ID, Attempt: a.attempt,
		Call: int(a.calls.Add(1)), Step: a.step,
		Principal: a.req.Principal, Model: model, At: time.Now().UTC(),
		Usage: final.Usage, Outcome: callOutcome(ctx, err),
	}
	if final.Usage == (chat.Usage{}) && (err == nil || emitted != "" || stopped) {
		in, out := chat.EstimatePromptTokens(p), chat.EstimateTokens(emitted)
		rec.Usage = chat.Usage{InputTokens: in, OutputTokens: out, TotalTokens: in + out}
		rec.Estimated = true
	}
	if rec.Usage.TotalTokens == 0 {
		rec.Usage.TotalTokens = rec.Usage.InputTokens + rec.Usage.OutputTokens
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := o.cfg.Usage.RecordUsage(rctx, rec); err != nil {
		a.log.Error("record a provider call's usage; it is not counted", "model", model, "call", rec.Call, "err", err)
	}
}

// callOutcome says how a provider call ended, for its usage record.
func callOutcome(ctx context.Context, err error) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errCancelled):
		return chat.OutcomeCancelled
	case errors.Is(cause, errBudget):
		return chat.OutcomeBudget
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
