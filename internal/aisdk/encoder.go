package aisdk

import "github.com/tokencast/tokencast/internal/chat"

// This file owns the encoder of one stream: the answer's events framed as
// chunks, and what to send after a RESTART. A new attempt publishes the
// answer again from START: first the steps an earlier attempt stored,
// exactly as they were shown, then the step that was in flight. The
// client must not be sent again what it holds (reset-step drops only the
// current step's parts, so earlier steps would show twice), so the encoder
// frames the new attempt as for a client of its own and compares that
// client's view with what it sent: while the new attempt only repeats what
// is shown, nothing is sent but a tool call's changed result; where it
// departs, the current step is replaced (reset-step and the new attempt's
// parts of it) and the stream goes on live.

// encoder frames one answer's events as UI message stream chunks for one
// client. It implements stream.Encoder.
type encoder struct {
	f     frames   // the chunks sent so far
	shown view     // what the client holds of them
	next  *attempt // after a RESTART, until the new attempt departs from what is shown
}

// attempt is a new attempt framed as for a client of its own.
type attempt struct {
	f    frames
	view view
}

// Event implements stream.Encoder.
func (e *encoder) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	if ev.Type == chat.EventRestart {
		// Nothing changes for the client yet: the new attempt's events say
		// what of what it holds stays.
		e.next = &attempt{}
		return b, false
	}
	if e.next != nil {
		return e.replay(b, ev)
	}
	cs, done := e.f.event(nil, ev)
	return e.send(b, cs), done
}

// replay takes an event of a new attempt.
func (e *encoder) replay(b []byte, ev *chat.Event) ([]byte, bool) {
	a := e.next
	wasSame := same(&a.view, &e.shown)
	cs, done := a.f.event(nil, ev)
	for _, c := range cs {
		a.view.apply(c)
	}
	if !done && grows(&a.view, &e.shown) {
		// A repeat of what is shown: only a tool call's result (or
		// approval request) the client does not hold yet is news.
		var news []chunk
		for _, c := range cs {
			if inPlace(c) && e.shown.changes(c) {
				news = append(news, c)
			}
		}
		return e.send(b, news), false
	}
	e.next = nil
	e.f = a.f
	if wasSame {
		// The client held exactly what the new attempt had shown: it goes
		// on from here as the attempt does.
		return e.send(b, cs), done
	}
	// The client holds something of the step in flight that the new
	// attempt does not repeat: that step is shown again as the attempt
	// has it. Steps before the first that differs are the client's.
	from := 0
	for from < len(a.view.steps) && from < len(e.shown.steps) && sameStep(&a.view.steps[from], &e.shown.steps[from]) {
		from++
	}
	if last := len(e.shown.steps) - 1; from > last && last >= 0 {
		from = last // the step reset-step empties is shown again
	}
	out := append([]chunk{{Type: "reset-step"}}, a.view.render(from)...)
	for _, c := range cs {
		if !structural(c) && c.Type != "start" {
			out = append(out, c)
		}
	}
	return e.send(b, out), done
}

// send appends cs to b, and to what the client holds.
func (e *encoder) send(b []byte, cs []chunk) []byte {
	for _, c := range cs {
		e.shown.apply(c)
		b = appendChunk(b, c)
	}
	return b
}

// Fail implements stream.Encoder.
func (e *encoder) Fail(b []byte, code, message string) []byte {
	return e.send(b, e.f.fail(nil, code, message))
}
