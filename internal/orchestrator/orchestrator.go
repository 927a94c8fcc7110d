// Package orchestrator is the worker: it pulls accepted requests, streams the
// answer from a provider, publishes it event by event, stores the turn and only
// then acks the request.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/chat"
)

// Provider streams a model's answer to a prompt: it calls emit with each text
// delta in order, returns how the answer ended, and stops when ctx ends.
type Provider interface {
	Stream(ctx context.Context, p chat.Prompt, emit func(text string) error) (chat.Final, error)
}

// Queue is what a worker needs from the bus.
type Queue interface {
	NextRequest(ctx context.Context) (*bus.Delivery, error)
	PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error)
	PublishEventAfter(ctx context.Context, ev chat.Event, after uint64) (uint64, error)
	AppendTurn(ctx context.Context, session string, t chat.Turn) error
	Conversation(ctx context.Context, session string) (chat.Conversation, error)
	Cancelled(ctx context.Context, session, request string) (bool, error)
	WatchCancels(fn func(session, request string)) (stop func(), err error)
	WatchExhausted(fn func(req chat.Request, deliveries uint64) error) (stop func(), err error)
	RecordDeadLetter(ctx context.Context, d bus.DeadLetter) error
	ClaimAttempt(ctx context.Context, session, request string, min uint64) (bus.Claim, error)
	CommitAttempt(ctx context.Context, session, request string, c bus.Claim, end chat.Event) error
	WatchAttempts(session, request string, fn func(attempt uint64)) (stop func(), err error)
	// Announce delivers an event to the session's subscribers without
	// storing it, for an answer the store has no space left for.
	Announce(ev chat.Event) error
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

// errSuperseded stops an attempt once a newer attempt at the same request
// has started: this worker lost its delivery without knowing (a broker
// restart, a pause longer than the ack wait), and the request now belongs to
// the newer attempt, which must be the one to end it and ack it.
var errSuperseded = errors.New("superseded by a newer attempt")

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
	return &Orchestrator{cfg: cfg, queue: queue, models: models, log: log, inFlight: make(map[string]context.CancelCauseFunc)}
}

func flightKey(session, request string) string { return session + "." + request }

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
	a := &answer{o: o, req: req, log: log, began: time.Now()}
	if done, err := a.claim(ctx, deliveries+1); done || err != nil {
		return err
	}
	if _, err := a.publish(ctx, a.event(chat.EventRestart, "")); err != nil {
		return fmt.Errorf("publish restart of an exhausted request: %w", err)
	}
	a.index = 0
	if err := a.fail(ctx, &chat.Error{Code: chat.CodeInternal, Message: "the answer could not be generated"}, log); err != nil {
		return fmt.Errorf("publish the end of an exhausted request: %w", err)
	}
	if err := o.queue.RecordDeadLetter(ctx, bus.DeadLetter{Request: req, Deliveries: deliveries, Reason: "max deliveries reached", At: time.Now().UTC()}); err != nil {
		log.Error("record dead letter", "err", err)
	}
	return nil
}

// handle answers one delivered request.
func (o *Orchestrator) handle(ctx context.Context, d *bus.Delivery) {
	req := d.Request
	log := o.log.With("session", req.SessionID, "request", req.ID, "attempt", d.Attempt)
	ctx, span := startAnswerSpan(ctx, req)
	defer span.End()
	a := &answer{o: o, req: req, attempt: d.Attempt, log: log, began: time.Now(), span: span}
	err := o.answer(ctx, d, a, log)
	if errors.Is(err, errSuperseded) {
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
		o.storageFull(ctx, d, a, err, log)
		return
	}
	log.Error("answer failed before it could be recorded", "err", err)
	if err := d.Release(ctx, time.Second); err != nil {
		log.Warn("hand request back", "err", err)
	}
}

// answer streams and records one answer. It returns an error only when the
// outcome could not be published or stored, so the request must be retried.
func (o *Orchestrator) answer(ctx context.Context, d *bus.Delivery, a *answer, log *slog.Logger) error {
	req := a.req
	// Whether the request has already ended is the claim's to say, not the
	// conversation's: a superseded attempt may have stored its turn before
	// learning it lost, while the newer attempt still has to finish.
	if done, err := a.claim(ctx, a.attempt); done || err != nil {
		return err
	}
	modelName := req.Model
	if modelName == "" {
		modelName = o.cfg.DefaultModel
	}
	model, ok := o.models[modelName]
	if !ok {
		return a.fail(ctx, &chat.Error{Code: chat.CodeProvider, Message: "the requested model is not configured"}, log)
	}
	a.model = model.Ref
	conv, err := o.queue.Conversation(ctx, req.SessionID)
	if err != nil {
		return err
	}
	prompt := chat.Prompt{Locale: req.Locale}
	for _, t := range conv.Before(req.ID) {
		if t.Role == chat.RoleAssistant && t.Status != chat.StatusComplete && t.Text == "" {
			continue
		}
		prompt.Messages = append(prompt.Messages, chat.Message{Role: t.Role, Text: t.Text})
	}
	prompt.Messages = append(prompt.Messages, chat.Message{Role: chat.RoleUser, Text: req.Message})

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
			cancel(errSuperseded)
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
		if _, err := a.publish(ctx, a.event(chat.EventRestart, "")); err != nil {
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

	co := newCoalescer(o.cfg.Coalescing, func(text string) error { return a.delta(ctx, text) })
	var final chat.Final
	perr := context.Cause(streamCtx)
	if perr == nil {
		final, perr = o.stream(streamCtx, a, model, prompt, func(text string) error {
			a.text.WriteString(text)
			return co.Add(text)
		})
	}
	if err := co.Close(); err != nil && !errors.Is(err, errClosed) {
		return err
	}
	switch {
	case a.storeErr != nil:
		return a.storeErr
	case a.superseded.Load():
		return errSuperseded
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(context.Cause(streamCtx), errCancelled):
		return a.cancelled(ctx, log)
	case perr != nil:
		return a.fail(ctx, perr, log)
	}
	return a.end(ctx, final)
}

// answer is the state of one answer being published.
type answer struct {
	o        *Orchestrator
	req      chat.Request
	attempt  uint64
	model    string
	index    int
	startSeq uint64
	lastSeq  uint64 // the position of this attempt's newest event
	text     strings.Builder
	log      *slog.Logger
	began    time.Time     // when this worker took the request
	emitted  bool          // the provider has produced text
	ttft     time.Duration // from began to the first token
	// owned is this attempt's claim on the request; superseded is set once
	// a newer attempt at the request is seen.
	owned      bus.Claim
	superseded atomic.Bool
	span       trace.Span // the answer's trace span; nil when not traced
	// storeErr is set once the store said it has no space left: nothing
	// more is published, and the answer ends with storageFull.
	storeErr error
}

// stored notes a write that failed for lack of space, and returns err.
func (a *answer) stored(err error) error {
	if a.storeErr == nil && errors.Is(err, chat.ErrStorageFull) {
		a.storeErr = err
	}
	return err
}

// appendTurn stores the answer's turn record.
func (a *answer) appendTurn(ctx context.Context, t chat.Turn) error {
	if a.storeErr != nil {
		return a.storeErr
	}
	return a.stored(a.o.queue.AppendTurn(ctx, a.req.SessionID, t))
}

// eventID makes a retried publish of the same event a no-op; a new attempt
// at the request publishes anew.
func eventID(ev chat.Event) string {
	return ev.SessionID + "." + ev.RequestID + "." + strconv.FormatUint(ev.Attempt, 10) + "." + strconv.Itoa(ev.Index) + "." + string(ev.Type)
}

// claim makes this worker the request's owner, as attempt min or later
// (delivery counts restart when the broker loses its consumer state). done
// means an earlier attempt had already committed its end: it is published
// again (a no-op if it was) and there is nothing left to do.
func (a *answer) claim(ctx context.Context, min uint64) (done bool, err error) {
	c, err := a.o.queue.ClaimAttempt(ctx, a.req.SessionID, a.req.ID, max(min, 1))
	if err != nil {
		return false, err
	}
	if c.Final != nil {
		a.log.Info("request already ended; publishing its end again", "attempt", c.Attempt)
		_, err := a.o.queue.PublishEvent(ctx, *c.Final, eventID(*c.Final))
		return true, err
	}
	a.attempt, a.owned = c.Attempt, c
	return false, nil
}

// finish commits ev as the request's end while this attempt still owns the
// request, then publishes it. Of two attempts that both ran, exactly one
// gets here; the other learns it was superseded and stops without a word.
func (a *answer) finish(ctx context.Context, ev chat.Event) error {
	if a.superseded.Load() {
		return errSuperseded
	}
	if a.storeErr != nil {
		return a.storeErr
	}
	if err := a.o.queue.CommitAttempt(ctx, a.req.SessionID, a.req.ID, a.owned, ev); err != nil {
		if errors.Is(err, bus.ErrSuperseded) {
			a.superseded.Store(true)
			return errSuperseded
		}
		return a.stored(err)
	}
	_, err := a.o.queue.PublishEvent(ctx, ev, eventID(ev))
	a.index++
	if err == nil {
		a.o.cfg.Recorder.Published()
	}
	return a.stored(err)
}

func (a *answer) event(t chat.EventType, message string) chat.Event {
	return chat.Event{
		Type:      t,
		SessionID: a.req.SessionID,
		RequestID: a.req.ID,
		Index:     a.index,
		Message:   message,
		Locale:    a.req.Locale,
		TimeStamp: time.Now().UTC(),
		StartSeq:  a.startSeq,
		Model:     a.model,
		Attempt:   a.attempt,
	}
}

func (a *answer) publish(ctx context.Context, ev chat.Event) (uint64, error) {
	if a.superseded.Load() {
		return 0, errSuperseded
	}
	if a.storeErr != nil {
		return 0, a.storeErr
	}
	var seq uint64
	var err error
	if ev.Type == chat.EventDelta && a.lastSeq > 0 {
		// One per token: published without a message id, which the stream
		// would hold in memory for its whole dedup window.
		seq, err = a.o.queue.PublishEventAfter(ctx, ev, a.lastSeq)
	} else {
		seq, err = a.o.queue.PublishEvent(ctx, ev, eventID(ev))
	}
	if err != nil {
		// The index is not spent: an answer that ends without its store
		// (storageFull) goes on from it, with no gap.
		return 0, a.stored(err)
	}
	a.index++
	a.lastSeq = seq
	a.o.cfg.Recorder.Published()
	return seq, nil
}

func (a *answer) start(ctx context.Context) error {
	seq, err := a.publish(ctx, a.event(chat.EventStart, chat.MarkerStart))
	a.startSeq = seq
	return err
}

func (a *answer) delta(ctx context.Context, text string) error {
	_, err := a.publish(ctx, a.event(chat.EventDelta, text))
	return err
}

func (a *answer) end(ctx context.Context, final chat.Final) error {
	if a.superseded.Load() {
		return errSuperseded
	}
	usage := final.Usage
	if err := a.appendTurn(ctx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusComplete, Locale: a.req.Locale, Model: a.model,
		Usage: &usage, At: time.Now().UTC(), Attempt: a.attempt,
	}); err != nil {
		return err
	}
	ev := a.event(chat.EventEnd, chat.MarkerEnd)
	ev.Usage = &usage
	ev.StopReason = final.StopReason
	ev.TTFTMillis = a.ttft.Milliseconds()
	if err := a.finish(ctx, ev); err != nil {
		return err
	}
	a.record(chat.EventEnd, "", usage)
	return nil
}

// record tells the metrics how the answer ended.
func (a *answer) record(outcome chat.EventType, code string, usage chat.Usage) {
	r := a.o.cfg.Recorder
	if a.emitted {
		r.FirstToken(a.model, a.ttft)
	}
	r.Answered(a.model, outcome, code, usage)
	a.traceOutcome(outcome, code, usage)
}

// fail publishes the localized apology, then the ERROR event with a stable
// code; the provider's own error goes to the log only.
func (a *answer) fail(ctx context.Context, cause error, log *slog.Logger) error {
	se := chat.StreamError{Code: chat.CodeProvider, Message: "the model could not answer"}
	var ce *chat.Error
	if errors.As(cause, &ce) {
		se = chat.StreamError{Code: ce.Code, Message: ce.Message}
	} else if errors.Is(cause, context.DeadlineExceeded) {
		se = chat.StreamError{Code: chat.CodeTimeout, Message: "the model took too long to answer"}
	}
	log.Warn("answer failed", "code", se.Code, "err", cause)
	if a.startSeq == 0 {
		if err := a.start(ctx); err != nil {
			return err
		}
	}
	// A truncated answer is kept, marked incomplete: never passed off as
	// whole.
	status := chat.StatusError
	if se.Code == chat.CodeIncomplete || a.emitted {
		status = chat.StatusIncomplete
	}
	if err := a.appendTurn(ctx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: status, Locale: a.req.Locale, Model: a.model, At: time.Now().UTC(), Attempt: a.attempt,
	}); err != nil {
		return err
	}
	// As the AWS sample's orchestrator does: once text was shown, the
	// apology opens a message of its own with a second #START_STREAM#
	// (the sample's UI starts a new bubble on it). Typed clients see a
	// MESSAGE of this answer, which adds no text.
	if a.text.Len() > 0 {
		if _, err := a.publish(ctx, a.event(chat.EventMessage, chat.MarkerStart)); err != nil {
			return err
		}
	}
	if err := a.delta(ctx, chat.ErrorText(a.req.Locale)); err != nil {
		return err
	}
	ev := a.event(chat.EventError, chat.MarkerError)
	ev.Error = &se
	if err := a.finish(ctx, ev); err != nil {
		return fmt.Errorf("publish error event: %w", err)
	}
	a.record(chat.EventError, se.Code, chat.Usage{})
	return nil
}

// cancelled records an answer the user stopped: the partial text is kept as
// a CANCELLED turn, and subscribers see CANCELLED.
func (a *answer) cancelled(ctx context.Context, log *slog.Logger) error {
	log.Info("answer cancelled", "chars", a.text.Len())
	if err := a.appendTurn(ctx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusCancelled, Locale: a.req.Locale, Model: a.model, At: time.Now().UTC(), Attempt: a.attempt,
	}); err != nil {
		return err
	}
	if err := a.finish(ctx, a.event(chat.EventCancelled, "")); err != nil {
		return err
	}
	a.record(chat.EventCancelled, "", chat.Usage{})
	return nil
}
