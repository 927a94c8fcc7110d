// Package orchestrator is the worker: it pulls accepted requests, streams the
// answer from a provider, publishes it event by event, stores the turn and only
// then acks the request.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Provider streams a model's answer to a prompt: it calls emit with each text
// delta in order, returns how the answer ended, and stops when ctx ends.
type Provider interface {
	Stream(ctx context.Context, p chat.Prompt, emit func(chat.Part) error) (chat.Final, error)
}

// Queue is what a worker needs from the bus: the requests, and the event
// history and conversations their answers are written to.
type Queue interface {
	chat.Queue
	PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error)
	PublishEventAfter(ctx context.Context, ev chat.Event, after uint64) (uint64, error)
	AppendTurn(ctx context.Context, session string, t chat.Turn) error
	Conversation(ctx context.Context, session string) (chat.Conversation, error)
	// Announce delivers an event to the session's subscribers without
	// storing it, for an answer the store has no space left for.
	Announce(ev chat.Event) error
	// RequestApproval stores a request for approval of a tool call unless
	// one is stored, and returns the one stored.
	RequestApproval(ctx context.Context, session, request string, info chat.ApprovalInfo) (chat.ApprovalRecord, error)
	// WaitApproval waits until the approval of a call is answered.
	WaitApproval(ctx context.Context, session, request, callID string) (chat.ApprovalRecord, error)
}

// Recorder is told what the workers do, for metrics.
type Recorder interface {
	FirstToken(model string, d time.Duration)
	InterToken(model string, d time.Duration)
	Redelivered()
	Answered(model string, outcome chat.EventType, code string, usage chat.Usage)
	Published()
}

type noRecorder struct{}

func (noRecorder) FirstToken(string, time.Duration)                    {}
func (noRecorder) Answered(string, chat.EventType, string, chat.Usage) {}
func (noRecorder) Published()                                          {}
func (noRecorder) InterToken(string, time.Duration)                    {}
func (noRecorder) Redelivered()                                        {}

// Model is a named, configured model.
type Model struct {
	// Ref is "provider:model-id", shown to clients in END events.
	Ref      string
	Provider Provider
	// ID is the provider's own model id.
	ID string
	// System returns the system prompt for a locale; nil for none.
	System func(locale string) string
	// Fallbacks name the models tried, in order, when this one fails
	// before its first token.
	Fallbacks []string
	// Tools are the tools the model may call, and Policies how each may
	// be run (a tool without one runs freely).
	Tools    []chat.ToolSpec
	Policies map[string]ToolPolicy
	// ToolRefs name a tool as the Toolbox knows it, by the name the model
	// calls it by, where the two differ.
	ToolRefs map[string]string
}

func (m Model) system(locale string) string {
	if m.System == nil {
		return ""
	}
	return m.System(locale)
}

// fallbacks returns m's fallback models that exist.
func (o *Orchestrator) fallbacks(m Model) []Model {
	var out []Model
	for _, name := range m.Fallbacks {
		if f, ok := o.models[name]; ok {
			out = append(out, f)
		}
	}
	return out
}

// Config tunes the workers.
type Config struct {
	Workers    int
	Coalescing Coalescing
	// Heartbeat is how often a long answer tells NATS the request is alive.
	Heartbeat time.Duration
	// DefaultModel is used when a request names none.
	DefaultModel string
	// Policy bounds provider calls.
	Policy Policy
	// Recorder receives metrics; nil records nothing.
	Recorder Recorder
	// Tools runs the tools models call; nil for none.
	Tools Toolbox
	// Agent bounds agent runs.
	Agent Agent
	// Usage records what each provider call cost; nil records nothing.
	Usage UsageLedger
	// Budgets hold calls to their principals' budgets; nil holds none.
	Budgets Budgets
}

// Orchestrator runs the worker pool.
type Orchestrator struct {
	cfg    Config
	queue  Queue
	models map[string]Model
	log    *slog.Logger

	running atomic.Int32

	mu       sync.Mutex
	inFlight map[string]context.CancelCauseFunc // by session.request
}

// errCancelled is the cause of a provider call stopped by the user.
var errCancelled = errors.New("cancelled by the user")

// New returns an orchestrator; models are keyed by the name a request uses.
func New(cfg Config, queue Queue, models map[string]Model, log *slog.Logger) *Orchestrator {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Recorder == nil {
		cfg.Recorder = noRecorder{}
	}
	if cfg.Policy.FirstToken <= 0 {
		cfg.Policy.FirstToken = time.Minute
	}
	if cfg.Policy.Idle <= 0 {
		cfg.Policy.Idle = 30 * time.Second
	}
	if cfg.Policy.Backoff <= 0 {
		cfg.Policy.Backoff = 250 * time.Millisecond
	}
	if cfg.Policy.Budget <= 0 {
		cfg.Policy.Budget = 30 * time.Second
	}
	cfg.Agent.defaults()
	return &Orchestrator{cfg: cfg, queue: queue, models: models, log: log, inFlight: make(map[string]context.CancelCauseFunc)}
}

func flightKey(session, request string) string { return chat.AnswerKey(session, request) }

// cancel stops the provider call of an answer generated by this process.
func (o *Orchestrator) cancel(session, request string) {
	o.mu.Lock()
	stop := o.inFlight[flightKey(session, request)]
	o.mu.Unlock()
	if stop != nil {
		stop(errCancelled)
	}
}

// pullers is how many requests a process may be waiting for at once: a
// handful keeps the queue's round trips from limiting how fast answers
// start, while an idle worker slot costs nothing, neither a goroutine nor a
// pending pull on the server (whose consumer allows 512 at once).
const pullers = 4

// Pulling reports whether every puller is taking requests.
func (o *Orchestrator) Pulling() bool { return int(o.running.Load()) == min(o.cfg.Workers, pullers) }

// Run answers up to cfg.Workers requests at once. Pullers take a request
// from the queue only while a worker slot is free, and each answer runs on
// its own goroutine. They stop taking requests when pull ends; answers in
// flight go on until work ends, and are then handed back for another worker.
func (o *Orchestrator) Run(pull, work context.Context) error {
	stopCancels, err := o.queue.WatchCancels(o.cancel)
	if err != nil {
		return err
	}
	defer stopCancels()
	stopExhausted, err := o.queue.WatchExhausted(func(req chat.Request, deliveries uint64) error {
		return o.exhausted(work, req, deliveries)
	})
	if err != nil {
		return err
	}
	defer stopExhausted()
	slots := make(chan struct{}, o.cfg.Workers)
	var answers, pulling sync.WaitGroup
	for range min(o.cfg.Workers, pullers) {
		pulling.Go(func() {
			o.running.Add(1)
			defer o.running.Add(-1)
			o.pull(pull, work, slots, &answers)
		})
	}
	pulling.Wait()
	answers.Wait()
	return nil
}

// pull takes requests while a worker slot is free and starts their answers.
func (o *Orchestrator) pull(pull, work context.Context, slots chan struct{}, answers *sync.WaitGroup) {
	for {
		select {
		case slots <- struct{}{}:
		case <-pull.Done():
			return
		}
		d, err := o.queue.NextRequest(pull)
		if pull.Err() != nil {
			<-slots
			if d != nil {
				_ = d.Release(context.WithoutCancel(work), 0)
			}
			return
		}
		if err != nil {
			<-slots
			o.log.Warn("waiting for requests", "err", err)
			select {
			case <-pull.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		answers.Go(func() {
			defer func() { <-slots }()
			o.handle(work, d)
		})
	}
}

// exhausted ends, visibly, a request whose deliveries ran out: its
// subscribers get ERROR, the conversation an ERROR turn, the operator a dead
// letter.
func (o *Orchestrator) exhausted(ctx context.Context, req chat.Request, deliveries uint64) error {
	log := o.log.With("session", req.SessionID, "request", req.ID)
	log.Error("request failed on every delivery; recording a dead letter", "deliveries", deliveries)
	a := o.newAnswer(req, 0, log)
	defer a.stopPublishing()
	done, err := a.claim(ctx, deliveries+1)
	if err != nil {
		return err
	}
	o.settleLost(ctx, a, max(a.attempt, deliveries+1))
	if done {
		return nil
	}
	if err := a.publish(ctx, a.event(chat.EventRestart, "")); err != nil {
		return fmt.Errorf("publish restart of an exhausted request: %w", err)
	}
	a.index = 0
	if err := a.fail(ctx, &chat.Error{Code: chat.CodeInternal, Message: "the answer could not be generated"}); err != nil {
		return fmt.Errorf("publish the end of an exhausted request: %w", err)
	}
	if err := o.queue.RecordDeadLetter(ctx, chat.DeadLetter{Request: req, Deliveries: deliveries, Reason: "max deliveries reached", At: time.Now().UTC()}); err != nil {
		log.Error("record dead letter", "err", err)
	}
	return nil
}

// newAnswer begins an answer to req as the given attempt (0 for one that
// has yet to claim the request).
func (o *Orchestrator) newAnswer(req chat.Request, attempt uint64, log *slog.Logger) *answer {
	return &answer{
		queue: o.queue, recorder: o.cfg.Recorder, heartbeat: o.cfg.Heartbeat,
		req: req, attempt: attempt, log: log, began: time.Now(),
	}
}

// handle answers one delivered request.
func (o *Orchestrator) handle(ctx context.Context, d chat.Delivery) {
	req := d.Request()
	log := o.log.With("session", req.SessionID, "request", req.ID, "attempt", d.Attempt())
	ctx, span := startAnswerSpan(ctx, req)
	defer span.End()
	a := o.newAnswer(req, d.Attempt(), log)
	a.span = span
	err := o.answer(ctx, d, a)
	// Every event handed over is stored or refused, and every call
	// recorded, before the request is acked, handed back, or ended as the
	// store allows (storageFull).
	a.stopPublishing()
	a.recording.Wait()
	if errors.Is(err, chat.ErrSuperseded) {
		log.Warn("a newer attempt took the request over; this one stops without a word")
		return
	}
	if err == nil {
		if err := d.Ack(ctx); err != nil {
			log.Warn("ack request", "err", err)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down: hand the request back for another worker.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.Release(rctx, 0); err != nil {
			log.Warn("hand request back", "err", err)
		} else {
			log.Info("request handed back for another worker")
		}
		return
	}
	if errors.Is(err, chat.ErrStorageFull) {
		a.storageFull(ctx, d, err)
		return
	}
	log.Error("answer failed before it could be recorded", "err", err)
	if err := d.Release(ctx, time.Second); err != nil {
		log.Warn("hand request back", "err", err)
	}
}

// answer streams and records one answer. It returns an error only when the
// outcome could not be published or stored, so the request must be retried.
func (o *Orchestrator) answer(ctx context.Context, d chat.Delivery, a *answer) error {
	req := a.req
	// Whether the request has already ended is the claim's to say, not the
	// conversation's: a superseded attempt may have stored its turn before
	// learning it lost, while the newer attempt still has to finish.
	done, err := a.claim(ctx, a.attempt)
	if err != nil {
		return err
	}
	if a.attempt > 1 {
		o.settleLost(ctx, a, a.attempt)
	}
	if done {
		return nil
	}
	modelName := req.Model
	if modelName == "" {
		modelName = o.cfg.DefaultModel
	}
	model, ok := o.models[modelName]
	if !ok {
		return a.fail(ctx, &chat.Error{Code: chat.CodeProvider, Message: "the requested model is not configured"})
	}
	a.model = model.Ref
	conv, err := o.queue.Conversation(ctx, req.SessionID)
	if err != nil {
		return err
	}
	prompt := chat.Prompt{Locale: req.Locale}
	for _, t := range conv.Before(req.ID) {
		if t.Role == chat.RoleAssistant && len(t.Run) > 0 {
			prompt.Messages = append(prompt.Messages, t.Run...)
			continue
		}
		if t.Role == chat.RoleAssistant && t.Status != chat.StatusComplete && t.Text == "" {
			continue
		}
		prompt.Messages = append(prompt.Messages, chat.Message{Role: t.Role, Text: t.Text})
	}
	prompt.Messages = append(prompt.Messages, chat.Message{Role: chat.RoleUser, Text: req.Message})
	if o.cfg.Tools != nil {
		prompt.Tools = model.Tools
	}
	var resumed []chat.Message
	if a.attempt > 1 {
		resumed = storedRun(conv, req.ID)
	}

	streamCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	key := flightKey(req.SessionID, req.ID)
	o.mu.Lock()
	o.inFlight[key] = cancel
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.inFlight, key)
		o.mu.Unlock()
	}()
	stopWatch, err := o.queue.WatchAttempts(req.SessionID, req.ID, func(attempt uint64) {
		if attempt > a.attempt {
			a.superseded.Store(true)
			cancel(chat.ErrSuperseded)
		}
	})
	if err != nil {
		return err
	}
	defer stopWatch()
	// A cancel that came before this worker took the request.
	if stopped, err := o.queue.Cancelled(ctx, req.SessionID, req.ID); err != nil {
		return err
	} else if stopped {
		cancel(errCancelled)
	}

	if a.attempt > 1 {
		o.cfg.Recorder.Redelivered()
		// An earlier attempt died mid-answer: subscribers drop what they
		// were shown of it before the answer starts over.
		if err := a.publish(ctx, a.event(chat.EventRestart, "")); err != nil {
			return err
		}
		a.index = 0
	}
	if err := a.start(ctx); err != nil {
		return err
	}
	beat := time.NewTicker(o.cfg.Heartbeat)
	defer beat.Stop()
	go func() {
		for {
			select {
			case <-streamCtx.Done():
				return
			case <-beat.C:
				_ = d.InProgress()
			}
		}
	}()

	r := newRun(o, a, model, ctx)
	runCtx, stopRun := context.WithCancelCause(streamCtx)
	defer stopRun(nil)
	r.clock = startClock(o.cfg.Agent.RunTimeout, func() { stopRun(errRunTimeout) })
	defer r.clock.stop()
	final, perr := o.steps(runCtx, a, r, model, prompt, resumed)
	cerr := r.close()
	// What the run handed over is stored before its end is decided: an
	// event that could not be is this answer's failure.
	a.pubMu.Lock()
	serr := a.settle(ctx)
	a.pubMu.Unlock()
	switch {
	case a.storeErr != nil:
		return a.storeErr
	case a.superseded.Load():
		return chat.ErrSuperseded
	case ctx.Err() != nil:
		return ctx.Err()
	case cerr != nil:
		return cerr
	case serr != nil:
		return serr
	case errors.Is(context.Cause(streamCtx), errCancelled):
		return a.cancelled(ctx)
	case errors.Is(context.Cause(runCtx), errRunTimeout):
		return a.fail(ctx, &chat.Error{Code: chat.CodeRunTimeout, Message: "the agent run took longer than it may"})
	case perr != nil:
		return a.fail(ctx, perr)
	}
	final.Usage = r.usage
	return a.end(ctx, final)
}

// steps runs the model, then the tools it calls, then the model again with
// their results, until it answers without calling any. A plain answer is a
// run of one step.
func (o *Orchestrator) steps(ctx context.Context, a *answer, r *run, model Model, prompt chat.Prompt, resumed []chat.Message) (chat.Final, error) {
	if len(resumed) > 0 {
		msgs, err := r.resume(ctx, resumed)
		if err != nil {
			return chat.Final{}, err
		}
		prompt.Messages = append(prompt.Messages, msgs...)
	}
	for {
		if err := context.Cause(ctx); err != nil {
			return chat.Final{}, err
		}
		if r.step >= o.cfg.Agent.MaxSteps {
			return chat.Final{}, &chat.Error{Code: chat.CodeStepLimit, Message: fmt.Sprintf("the agent run reached its limit of %d model calls", o.cfg.Agent.MaxSteps)}
		}
		r.step++
		a.step = r.step
		a.stepEmitted = false
		final, err := o.stream(ctx, a, model, prompt, r.onPart)
		msg, serr := r.endStep()
		a.last = msg
		if err != nil {
			return final, err
		}
		if serr != nil {
			return final, serr
		}
		r.usage.Add(final.Usage)
		usage := final.Usage
		msg.Usage = &usage
		if final.StopReason == chat.StopBudget {
			// The run ends here; a tool call cut short is neither run
			// nor kept, so the conversation stays valid for the model.
			msg = withoutToolCalls(msg)
			a.last = msg
			return final, nil
		}
		a.last = msg
		calls := toolCalls(msg)
		if len(calls) > 0 && o.cfg.Tools == nil {
			calls = nil
		}
		// A plain answer is one step and says nothing of steps.
		if len(calls) > 0 || r.step > 1 {
			if err := r.publishStep(final.StopReason, len(calls) > 0, final.Usage); err != nil {
				return final, err
			}
		}
		if len(calls) == 0 {
			return final, nil
		}
		// A step with a call that must not run twice unasked, or that
		// waits for approval, is stored before its tools run: a worker
		// that takes over knows which calls may have started. Any other
		// step is stored with its first result; a worker that dies
		// before then is replaced by one that calls the model again.
		if r.storeBeforeTools(calls) {
			if err := r.storeProgress(append(append([]chat.Message(nil), a.run...), msg)); err != nil {
				return final, err
			}
		}
		results, err := r.runTools(ctx, msg, calls, nil, false)
		// Kept even when the run stops here: the turn says what was
		// called and what came of it.
		a.last = chat.Message{}
		step := []chat.Message{msg, {Role: chat.RoleUser, Blocks: results}}
		a.run = append(a.run, step...)
		if err != nil {
			return final, err
		}
		prompt.Messages = append(prompt.Messages, step...)
	}
}
