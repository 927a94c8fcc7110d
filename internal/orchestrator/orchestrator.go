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
	AppendTurn(ctx context.Context, session string, t chat.Turn) error
	Conversation(ctx context.Context, session string) (chat.Conversation, error)
}

// Model is a named, configured model.
type Model struct {
	// Ref is "provider:model-id", shown to clients in END events.
	Ref      string
	Provider Provider
	// ID is the provider's own model id.
	ID     string
	System string
}

// Config tunes the workers.
type Config struct {
	Workers    int
	Coalescing Coalescing
	// Heartbeat is how often a long answer tells NATS the request is alive.
	Heartbeat time.Duration
	// DefaultModel is used when a request names none.
	DefaultModel string
}

// Orchestrator runs the worker pool.
type Orchestrator struct {
	cfg    Config
	queue  Queue
	models map[string]Model
	log    *slog.Logger

	running atomic.Int32
}

// New returns an orchestrator; models are keyed by the name a request uses.
func New(cfg Config, queue Queue, models map[string]Model, log *slog.Logger) *Orchestrator {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	return &Orchestrator{cfg: cfg, queue: queue, models: models, log: log}
}

// Running reports how many workers are pulling requests.
func (o *Orchestrator) Running() int { return int(o.running.Load()) }

// Run pulls and answers requests with cfg.Workers workers until ctx ends.
func (o *Orchestrator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range o.cfg.Workers {
		wg.Go(func() {
			o.running.Add(1)
			defer o.running.Add(-1)
			o.work(ctx)
		})
	}
	wg.Wait()
	return nil
}

func (o *Orchestrator) work(ctx context.Context) {
	for {
		d, err := o.queue.NextRequest(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.log.Warn("waiting for requests", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		o.handle(ctx, d)
	}
}

// handle answers one delivered request.
func (o *Orchestrator) handle(ctx context.Context, d *bus.Delivery) {
	req := d.Request
	log := o.log.With("session", req.SessionID, "request", req.ID, "attempt", d.Attempt)
	a := &answer{o: o, req: req, attempt: d.Attempt}
	err := o.answer(ctx, d, a, log)
	if err == nil {
		if err := d.Ack(ctx); err != nil {
			log.Warn("ack request", "err", err)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down: hand the request back for another worker.
		_ = d.Release(0)
		return
	}
	log.Error("answer failed before it could be recorded", "err", err)
	_ = d.Release(time.Second)
}

// answer streams and records one answer. It returns an error only when the
// outcome could not be published or stored, so the request must be retried.
func (o *Orchestrator) answer(ctx context.Context, d *bus.Delivery, a *answer, log *slog.Logger) error {
	req := a.req
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
	prompt := chat.Prompt{Model: model.ID, System: model.System, Locale: req.Locale}
	for _, t := range conv.Before(req.ID) {
		if t.Role == chat.RoleAssistant && t.Status != chat.StatusComplete && t.Text == "" {
			continue
		}
		prompt.Messages = append(prompt.Messages, chat.Message{Role: t.Role, Text: t.Text})
	}
	prompt.Messages = append(prompt.Messages, chat.Message{Role: chat.RoleUser, Text: req.Message})

	if err := a.start(ctx); err != nil {
		return err
	}
	beat := time.NewTicker(o.cfg.Heartbeat)
	defer beat.Stop()
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	final, perr := model.Provider.Stream(streamCtx, prompt, func(text string) error {
		a.text.WriteString(text)
		return co.Add(text)
	})
	if err := co.Close(); err != nil && !errors.Is(err, errClosed) {
		return err
	}
	if perr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
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
	text     strings.Builder
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
	}
}

func (a *answer) publish(ctx context.Context, ev chat.Event) (uint64, error) {
	// The id makes a retried publish of the same event a no-op; a new
	// attempt at the request publishes anew.
	id := ev.RequestID + "." + strconv.FormatUint(a.attempt, 10) + "." + strconv.Itoa(ev.Index)
	seq, err := a.o.queue.PublishEvent(ctx, ev, id)
	a.index++
	return seq, err
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
	usage := final.Usage
	if err := a.o.queue.AppendTurn(ctx, a.req.SessionID, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusComplete, Locale: a.req.Locale, Model: a.model,
		Usage: &usage, At: time.Now().UTC(),
	}); err != nil {
		return err
	}
	ev := a.event(chat.EventEnd, chat.MarkerEnd)
	ev.Usage = &usage
	ev.StopReason = final.StopReason
	_, err := a.publish(ctx, ev)
	return err
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
	if err := a.o.queue.AppendTurn(ctx, a.req.SessionID, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusError, Locale: a.req.Locale, Model: a.model, At: time.Now().UTC(),
	}); err != nil {
		return err
	}
	if err := a.delta(ctx, chat.ErrorText(a.req.Locale)); err != nil {
		return err
	}
	ev := a.event(chat.EventError, chat.MarkerError)
	ev.Error = &se
	if _, err := a.publish(ctx, ev); err != nil {
		return fmt.Errorf("publish error event: %w", err)
	}
	return nil
}
