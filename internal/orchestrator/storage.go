package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// storeRetryMax bounds the wait between two tries at storing the end of an
// answer the store had no space for.
const storeRetryMax = 10 * time.Second

// storageFull ends an answer whose events the store has no space left for.
// Its subscribers are told at once, by events announced without being
// stored: the apology and ERROR with STORAGE_UNAVAILABLE, as for any failed
// answer. The worker then keeps the request, and tries again and again to
// store the same end, so that once there is space the conversation says how
// the answer ended instead of IN_PROGRESS forever; a shutdown hands the
// request back instead.
func (a *answer) storageFull(ctx context.Context, d chat.Delivery, cause error) {
	a.log.Error("the store has no space left: the answer ends with STORAGE_UNAVAILABLE", "err", cause)
	a.storeErr = nil
	evs := a.failureEvents(chat.StreamError{Code: chat.CodeStorageUnavailable, Message: "the answer could not be stored"})
	for _, ev := range evs {
		if err := a.queue.Announce(ev); err != nil {
			a.log.Warn("announce the end of an answer", "err", err)
			break
		}
	}
	a.record(chat.EventError, chat.CodeStorageUnavailable, chat.Usage{})
	stored := 0 // how many of evs are stored
	for wait := min(time.Second, a.heartbeat); ; wait = min(2*wait, storeRetryMax, a.heartbeat) {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := d.Release(rctx, 0); err != nil {
				a.log.Warn("hand request back", "err", err)
			}
			return
		case <-time.After(wait):
		}
		_ = d.InProgress()
		err := a.storeEnd(ctx, evs, &stored)
		switch {
		case err == nil:
			a.log.Info("the end of an answer cut short by a full store is stored")
			if err := d.Ack(ctx); err != nil {
				a.log.Warn("ack request", "err", err)
			}
			return
		case errors.Is(err, chat.ErrSuperseded):
			a.log.Warn("a newer attempt took the request over; this one stops without a word")
			return
		}
		a.log.Debug("the end of the answer is not stored yet", "err", err)
	}
}

// failureEvents are the events that end a failed answer from where it is:
// its START if none was published, a second start marker once text was
// shown (as fail explains), the localized apology, then ERROR.
func (a *answer) failureEvents(se chat.StreamError) []chat.Event {
	var evs []chat.Event
	add := func(t chat.EventType, message string) *chat.Event {
		evs = append(evs, a.event(t, message))
		a.index++
		return &evs[len(evs)-1]
	}
	if a.startSeq == 0 {
		add(chat.EventStart, chat.MarkerStart)
	}
	if a.text.Len() > 0 {
		add(chat.EventMessage, chat.MarkerStart)
	}
	add(chat.EventDelta, chat.ErrorText(a.req.Locale))
	add(chat.EventError, chat.MarkerError).Error = &se
	return evs
}

// storeEnd stores an answer's turn and the events evs (the last one ends
// it), from *stored on; *stored counts the events stored so far.
func (a *answer) storeEnd(ctx context.Context, evs []chat.Event, stored *int) error {
	if a.owned.Attempt == 0 { // the store was full before the claim
		done, err := a.claim(ctx, a.attempt)
		if done || err != nil {
			return err
		}
		for i := range evs {
			evs[i].Attempt = a.attempt
		}
	}
	status := chat.StatusError
	if a.emitted || a.text.Len() > 0 {
		status = chat.StatusIncomplete
	}
	if err := a.queue.AppendTurn(ctx, a.req.SessionID, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: status, Locale: a.req.Locale, Model: a.model, At: time.Now().UTC(), Attempt: a.attempt,
	}); err != nil {
		return err
	}
	last := len(evs) - 1
	for ; *stored < last; *stored++ {
		ev := evs[*stored]
		seq, err := a.queue.PublishEvent(ctx, ev, eventID(ev))
		if err != nil {
			return err
		}
		if ev.Type == chat.EventStart {
			for i := *stored + 1; i < len(evs); i++ {
				evs[i].StartSeq = seq
			}
		}
	}
	if err := a.queue.CommitAttempt(ctx, a.req.SessionID, a.req.ID, a.owned, evs[last]); err != nil {
		return err
	}
	_, err := a.queue.PublishEvent(ctx, evs[last], eventID(evs[last]))
	return err
}
