package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Policy says how long a provider may keep us waiting and how failures
// before the first token are retried. After the first token nothing is
// retried: a user has seen part of an answer, and a second call would bill
// and show a different one.
type Policy struct {
	// FirstToken bounds the wait for the first token of an attempt.
	FirstToken time.Duration
	// Idle bounds the silence between two tokens.
	Idle time.Duration
	// Retries are the extra attempts per model on a retryable failure
	// (throttled, unavailable, unreachable) before the first token.
	Retries int
	// Backoff is the first retry's base delay; it doubles, with jitter.
	Backoff time.Duration
	// Budget bounds the total time spent waiting between attempts.
	Budget time.Duration
}

var (
	errFirstTokenTimeout = errors.New("no first token in time")
	errIdleTimeout       = errors.New("the model went silent mid-answer")
)

// retryable reports whether a failure before the first token may be retried:
// the provider asked us to slow down, or could not serve right now. A model
// that timed out is not asked again (the wait would double); its fallback is.
func retryable(err error) bool {
	switch chat.ErrorCode(err) {
	case chat.CodeThrottled, chat.CodeProviderUnavailable:
		return true
	}
	return false
}

// retryAfter is the provider's own wish, when it said one.
func retryAfter(err error) time.Duration {
	var hint interface{ RetryAfterHint() time.Duration }
	if errors.As(err, &hint) {
		return hint.RetryAfterHint()
	}
	return 0
}

// backoff is the delay before retry n (0-based): Backoff·2ⁿ, jittered by up
// to half, so that many workers hit by one outage do not return in step.
func (p Policy) backoff(n int) time.Duration {
	d := p.Backoff << min(n, 10)
	return d/2 + rand.N(d/2+1)
}

// stream asks the model, then its fallbacks, for the answer. Each model gets
// 1+Retries attempts while no token of the step has been emitted; the first
// token commits the step to the model that produced it.
func (o *Orchestrator) stream(ctx context.Context, a *answer, first Model, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	var waited time.Duration
	var err error
	for _, m := range append([]Model{first}, o.fallbacks(first)...) {
		var final chat.Final
		final, err = o.withRetries(ctx, a, m, prompt, emit, &waited)
		if err == nil || a.stepEmitted || ctx.Err() != nil || !fallbackable(err) {
			return final, err
		}
		a.log.Warn("model failed before its first token; trying the next", "model", m.Ref, "err", err)
	}
	return chat.Final{}, err
}

// fallbackable failures are the model's or its provider's, not the
// request's: another model may well answer.
func fallbackable(err error) bool {
	switch chat.ErrorCode(err) {
	case chat.CodeProviderAuth, chat.CodeTimeout:
		return true
	}
	return retryable(err)
}

// withRetries calls one model until it answers, fails for good, or the
// retry budget (shared by every model of the answer) is spent.
func (o *Orchestrator) withRetries(ctx context.Context, a *answer, m Model, prompt chat.Prompt, emit func(chat.Part) error, waited *time.Duration) (chat.Final, error) {
	a.model = m.Ref
	p := prompt
	p.Model = m.ID
	p.System = m.system(prompt.Locale)
	pol := o.cfg.Policy
	for n := 0; ; n++ {
		final, err := o.attempt(ctx, a, m, p, emit)
		if err == nil || a.stepEmitted || ctx.Err() != nil || !retryable(err) || n >= pol.Retries {
			return final, err
		}
		wait := pol.backoff(n)
		if hint := retryAfter(err); hint > 0 {
			wait = hint
		}
		if *waited+wait > pol.Budget {
			return final, err
		}
		*waited += wait
		a.log.Info("retrying the model before the first token", "model", m.Ref, "after", wait, "err", err)
		if err := sleep(ctx, wait); err != nil {
			return chat.Final{}, err
		}
	}
}

// attempt is one provider call under the first-token and idle watchdog.
func (o *Orchestrator) attempt(ctx context.Context, a *answer, m Model, p chat.Prompt, emit func(chat.Part) error) (final chat.Final, err error) {
	ctx, span := startProviderSpan(ctx, m)
	defer func() { endProviderSpan(span, err) }()
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pol := o.cfg.Policy
	var started atomic.Bool
	watchdog := time.AfterFunc(pol.FirstToken, func() {
		if started.Load() {
			cancel(errIdleTimeout)
		} else {
			cancel(errFirstTokenTimeout)
		}
	})
	defer watchdog.Stop()
	var last time.Time
	meter, fits, err := o.meter(ctx, a, m.Ref, p)
	if err != nil {
		return chat.Final{}, err
	}
	if !fits {
		// Over budget before the call: it is not made.
		return chat.Final{StopReason: chat.StopBudget}, nil
	}
	defer func() {
		// Recorded beside the run: the next step need not wait for it,
		// and should this worker die first, the call's note counts it.
		outcome, stopped, final := callOutcome(ctx, meter, err), context.Cause(actx) != nil, final
		a.recording.Go(func() { o.recordCall(ctx, a, meter, final, outcome, stopped) })
	}()
	final, err = m.Provider.Stream(actx, p, func(part chat.Part) error {
		if ok, err := meter.part(ctx, part); err != nil || !ok {
			// Stopped at the provider: the budget has no room for more.
			cancel(errBudget)
			return cmp.Or(err, errBudget)
		}
		now := time.Now()
		a.stepEmitted = true
		if !a.emitted {
			a.emitted = true
			a.ttft = now.Sub(a.began)
			started.Store(true)
		} else {
			o.cfg.Recorder.InterToken(m.Ref, now.Sub(last))
		}
		last = now
		watchdog.Reset(pol.Idle)
		return emit(part)
	})
	switch cause := context.Cause(actx); {
	case meter.overBudget && ctx.Err() == nil:
		final.StopReason = chat.StopBudget
		return final, nil
	case ctx.Err() != nil:
		return final, err // the caller's cancel or shutdown decides
	case errors.Is(cause, errFirstTokenTimeout):
		return final, &chat.Error{Code: chat.CodeTimeout, Message: "the model did not start answering in time"}
	case errors.Is(cause, errIdleTimeout):
		return final, &chat.Error{Code: chat.CodeTimeout, Message: "the model stopped answering mid-way"}
	}
	return final, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
