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

	"github.com/tokencast/tokencast/internal/chat"
)

// answer is one attempt at answering a request, from its claim to its end:
// what it published, the text so far, and the one way it may end (END,
// ERROR, CANCELLED, or nothing once superseded). It writes through the queue
// it is given and knows nothing of the pool that runs it.
type answer struct {
	queue    Queue
	recorder Recorder
	// heartbeat bounds the wait between two tries at storing the end of an
	// answer the store had no space for (storageFull).
	heartbeat time.Duration

	req      chat.Request
	attempt  uint64
	model    string
	index    int
	startSeq uint64
	text     strings.Builder
	log      *slog.Logger
	began    time.Time // when this worker took the request
	emitted  bool      // the provider has produced output
	// stepEmitted says the model call of the current step has produced
	// output: it is no longer retried or handed to a fallback.
	stepEmitted bool
	ttft        time.Duration // from began to the first token
	// calls counts this attempt's provider calls, step is the agent run's
	// current model call: a usage record's place (usage.go).
	calls atomic.Int32
	step  int
	// recording waits for the usage records of calls that ended: they are
	// written beside the run, and waited for before the answer's end.
	recording sync.WaitGroup
	// owned is this attempt's claim on the request; superseded is set once
	// a newer attempt at the request is seen.
	owned      chat.Claim
	superseded atomic.Bool
	span       trace.Span // the answer's trace span; nil when not traced
	// storeErr is set once the store said it has no space left: nothing
	// more is published, and the answer ends with storageFull.
	storeErr error
	// run is an agent answer's completed steps (each the model's message
	// and the tool results), last the model call after them.
	run  []chat.Message
	last chat.Message
	// pubMu orders publishing: text, reasoning and tool results may come
	// from several goroutines. It guards index, pubQ and pubErr.
	pubMu sync.Mutex
	// The publisher (publisher.go): its queue, its end, its own state, and
	// the first failure it reported (pubFailed) and the worker has seen
	// (pubErr).
	pubQ      chan pubItem
	pubDone   chan struct{}
	pub       pubState
	pubFailed atomic.Bool
	pubErr    error
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
	return a.stored(a.queue.AppendTurn(ctx, a.req.SessionID, t))
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
	c, err := a.queue.ClaimAttempt(ctx, a.req.SessionID, a.req.ID, max(min, 1))
	if err != nil {
		return false, err
	}
	if c.Final != nil {
		a.log.Info("request already ended; publishing its end again", "attempt", c.Attempt)
		_, err := a.queue.PublishEvent(ctx, *c.Final, eventID(*c.Final))
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
		return chat.ErrSuperseded
	}
	if a.storeErr != nil {
		return a.storeErr
	}
	// Every call is recorded before the end is committed: once it is,
	// no attempt comes to count a call from its note.
	a.recording.Wait()
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	// Every event before the end is stored first.
	if err := a.settle(ctx); err != nil {
		return err
	}
	ev.Index = a.index
	if err := a.queue.CommitAttempt(ctx, a.req.SessionID, a.req.ID, a.owned, ev); err != nil {
		if errors.Is(err, chat.ErrSuperseded) {
			a.superseded.Store(true)
			return chat.ErrSuperseded
		}
		return a.stored(err)
	}
	_, err := a.queue.PublishEvent(ctx, ev, eventID(ev))
	a.index++
	if err == nil {
		a.recorder.Published()
	}
	return a.stored(err)
}

func (a *answer) event(t chat.EventType, message string) chat.Event {
	// The index moves as events are published, by a step's tool calls too,
	// each on its own goroutine.
	a.pubMu.Lock()
	index := a.index
	a.pubMu.Unlock()
	return chat.Event{
		Type:      t,
		SessionID: a.req.SessionID,
		RequestID: a.req.ID,
		Index:     index,
		Message:   message,
		Locale:    a.req.Locale,
		TimeStamp: time.Now().UTC(),
		StartSeq:  a.startSeq,
		Model:     a.model,
		Attempt:   a.attempt,
	}
}

// publish hands ev to the answer's publisher as its next event and returns
// at once; an event that could not be stored is reported by a later
// publish, or by the settle before the answer ends.
func (a *answer) publish(ctx context.Context, ev chat.Event) error {
	_, err := a.publishing(ctx, ev, false)
	return err
}

// publishing hands ev over; wait says to wait until it is stored, and
// returns its position in the stream.
func (a *answer) publishing(ctx context.Context, ev chat.Event, wait bool) (uint64, error) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	if a.superseded.Load() {
		return 0, chat.ErrSuperseded
	}
	if a.storeErr != nil {
		return 0, a.storeErr
	}
	if a.pubFailed.Load() && a.pubErr == nil {
		_ = a.settle(ctx)
	}
	if a.pubErr != nil {
		return 0, a.pubErr
	}
	ev.Index = a.index
	var reply chan pubReply
	if wait {
		reply = make(chan pubReply, 1)
	}
	if err := a.handOver(ctx, ev, reply); err != nil {
		return 0, err
	}
	// The index is spent now; if the event is not stored, settle takes
	// the answer back to it.
	a.index++
	if !wait {
		return 0, nil
	}
	select {
	case r := <-reply:
		a.noteFailure(r.err)
		return r.seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (a *answer) start(ctx context.Context) error {
	seq, err := a.publishing(ctx, a.event(chat.EventStart, chat.MarkerStart), true)
	a.startSeq = seq
	return err
}

func (a *answer) delta(ctx context.Context, text string) error {
	return a.publish(ctx, a.event(chat.EventDelta, text))
}

func (a *answer) end(ctx context.Context, final chat.Final) error {
	if a.superseded.Load() {
		return chat.ErrSuperseded
	}
	usage := final.Usage
	if err := a.appendTurn(ctx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusComplete, Locale: a.req.Locale, Model: a.model,
		Usage: &usage, At: time.Now().UTC(), Attempt: a.attempt, Run: a.runMessages(a.last),
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
	if a.emitted {
		a.recorder.FirstToken(a.model, a.ttft)
	}
	a.recorder.Answered(a.model, outcome, code, usage)
	a.traceOutcome(outcome, code, usage)
}

// fail publishes the localized apology, then the ERROR event with a stable
// code; the provider's own error goes to the log only.
func (a *answer) fail(ctx context.Context, cause error) error {
	se := chat.StreamError{Code: chat.CodeProvider, Message: "the model could not answer"}
	var ce *chat.Error
	if errors.As(cause, &ce) {
		se = chat.StreamError{Code: ce.Code, Message: ce.Message}
	} else if errors.Is(cause, context.DeadlineExceeded) {
		se = chat.StreamError{Code: chat.CodeTimeout, Message: "the model took too long to answer"}
	}
	a.log.Warn("answer failed", "code", se.Code, "err", cause)
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
		Run: a.runMessages(a.last),
	}); err != nil {
		return err
	}
	// As the AWS sample's orchestrator does: once text was shown, the
	// apology opens a message of its own with a second #START_STREAM#
	// (the sample's UI starts a new bubble on it). Typed clients see a
	// MESSAGE of this answer, which adds no text.
	if a.text.Len() > 0 {
		if err := a.publish(ctx, a.event(chat.EventMessage, chat.MarkerStart)); err != nil {
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
func (a *answer) cancelled(ctx context.Context) error {
	a.log.Info("answer cancelled", "chars", a.text.Len())
	if err := a.appendTurn(ctx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusCancelled, Locale: a.req.Locale, Model: a.model, At: time.Now().UTC(), Attempt: a.attempt,
		Run: a.runMessages(a.last),
	}); err != nil {
		return err
	}
	if err := a.finish(ctx, a.event(chat.EventCancelled, "")); err != nil {
		return err
	}
	a.record(chat.EventCancelled, "", chat.Usage{})
	return nil
}
