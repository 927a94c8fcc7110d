package aisdk

import (
	"bytes"
	"encoding/json"
	"strings"
)

// This file owns the view: what a client holds of an answer after the
// chunks it was sent, as the `ai` package's processUIMessageStream builds
// its UI message (steps of parts; tool parts found by id and updated in
// place). The encoder keeps the view of what it sent, so after a RESTART it
// can tell what of the new attempt the client already shows.

// view is a UI message as the chunks applied so far make it.
type view struct {
	started bool
	steps   []viewStep
}

// viewStep is the parts after one step-start.
type viewStep struct {
	parts    []part
	finished bool
}

// part is one part of the message. The fields after input are a tool
// call's state, which later chunks change in place wherever the part is.
type part struct {
	kind  string // "text", "reasoning", "tool", "source"
	id    string // the part's id; a tool call's toolCallId
	name  string // a tool's name
	text  string // text and reasoning; a tool's input as streamed
	open  bool   // text or reasoning not ended; a tool's input still streaming
	input json.RawMessage
	url   string // a source's
	title string
	media string

	output   *string
	errText  string
	failed   bool
	approval string
}

// apply changes the view as a client applies c.
func (v *view) apply(c chunk) {
	switch c.Type {
	case "start":
		v.started = true
	case "start-step":
		v.steps = append(v.steps, viewStep{})
	case "finish-step":
		if s := v.current(); s != nil {
			s.finished = true
		}
	case "reset-step":
		if s := v.current(); s != nil {
			s.parts, s.finished = nil, false
		}
	case "text-start", "reasoning-start":
		v.add(part{kind: strings.TrimSuffix(c.Type, "-start"), id: c.ID, open: true})
	case "text-delta", "reasoning-delta":
		if p := v.find(strings.TrimSuffix(c.Type, "-delta"), c.ID, true); p != nil && c.Delta != nil {
			p.text += *c.Delta
		}
	case "text-end", "reasoning-end":
		if p := v.find(strings.TrimSuffix(c.Type, "-end"), c.ID, true); p != nil {
			p.open = false
		}
	case "tool-input-start":
		v.add(part{kind: "tool", id: c.ToolCallID, name: c.ToolName, open: true})
	case "tool-input-delta":
		if p := v.find("tool", c.ToolCallID, true); p != nil && c.InputTextDelta != nil {
			p.text += *c.InputTextDelta
		}
	case "tool-input-available":
		p := v.find("tool", c.ToolCallID, true)
		if p == nil {
			p = v.add(part{kind: "tool", id: c.ToolCallID})
		}
		p.name, p.open, p.input = c.ToolName, false, c.Input
	case "tool-output-available":
		if p := v.find("tool", c.ToolCallID, false); p != nil {
			p.output, p.errText, p.failed = c.Output, "", false
		}
	case "tool-output-error":
		if p := v.find("tool", c.ToolCallID, false); p != nil {
			p.output, p.errText, p.failed = nil, c.ErrorText, true
		}
	case "tool-approval-request":
		if p := v.find("tool", c.ToolCallID, false); p != nil {
			p.approval = c.ApprovalID
		}
	case "source-url", "source-document":
		v.add(part{kind: "source", id: c.SourceID, url: c.URL, title: c.Title, media: c.MediaType})
	}
}

// current is the step new parts go to; a part before any step-start makes
// one, as the client holds such parts all the same.
func (v *view) current() *viewStep {
	if len(v.steps) == 0 {
		return nil
	}
	return &v.steps[len(v.steps)-1]
}

func (v *view) add(p part) *part {
	if len(v.steps) == 0 {
		v.steps = append(v.steps, viewStep{})
	}
	s := v.current()
	s.parts = append(s.parts, p)
	return &s.parts[len(s.parts)-1]
}

// find is the newest part of kind with id: in the current step only when
// inStep (as the client looks up open parts), else anywhere (as it looks
// up a tool call for its result).
func (v *view) find(kind, id string, inStep bool) *part {
	for i := len(v.steps) - 1; i >= 0; i-- {
		ps := v.steps[i].parts
		for j := len(ps) - 1; j >= 0; j-- {
			if ps[j].kind == kind && ps[j].id == id {
				return &ps[j]
			}
		}
		if inStep {
			return nil
		}
	}
	return nil
}

// changes reports whether applying c, a chunk that changes a tool call in
// place, would change what the view holds.
func (v *view) changes(c chunk) bool {
	p := v.find("tool", c.ToolCallID, false)
	if p == nil {
		return true
	}
	switch c.Type {
	case "tool-output-available":
		return p.failed || p.output == nil || c.Output == nil || *p.output != *c.Output
	case "tool-output-error":
		return !p.failed || p.errText != c.ErrorText
	case "tool-approval-request":
		return p.approval != c.ApprovalID
	}
	return true
}

// inPlace reports whether c changes a tool call wherever it is, rather
// than building the message's steps and parts.
func inPlace(c chunk) bool {
	switch c.Type {
	case "tool-output-available", "tool-output-error", "tool-approval-request":
		return true
	}
	return false
}

// structural reports whether c builds the message's steps and parts.
func structural(c chunk) bool {
	switch c.Type {
	case "start", "finish", "error", "abort", "message-metadata", doneType:
		return false
	}
	return !inPlace(c)
}

// same reports whether a and b hold the same steps and parts, open or
// ended alike (a tool call's state aside).
func same(a, b *view) bool {
	if a.started != b.started || len(a.steps) != len(b.steps) {
		return false
	}
	for i := range a.steps {
		if !sameStep(&a.steps[i], &b.steps[i]) {
			return false
		}
	}
	return true
}

func sameStep(a, b *viewStep) bool {
	if a.finished != b.finished || len(a.parts) != len(b.parts) {
		return false
	}
	for i := range a.parts {
		if !samePart(&a.parts[i], &b.parts[i]) {
			return false
		}
	}
	return true
}

func samePart(p, q *part) bool {
	if p.kind != q.kind || p.id != q.id || p.name != q.name || p.open != q.open ||
		p.url != q.url || p.title != q.title || p.media != q.media {
		return false
	}
	if p.kind == "tool" && !p.open {
		return sameJSON(p.input, q.input)
	}
	return p.text == q.text
}

// grows reports whether b may be what a becomes: every step of a but its
// last is b's, and its last is the start of b's (a text b's text begins
// with, a tool call whose input is still streaming). A finished step, or
// an ended part, can no longer grow.
func grows(a, b *view) bool {
	if (a.started && !b.started) || len(a.steps) > len(b.steps) {
		return false
	}
	for i := range a.steps {
		s, t := &a.steps[i], &b.steps[i]
		if i < len(a.steps)-1 || s.finished {
			if len(s.parts) != len(t.parts) || (s.finished && !t.finished) {
				return false
			}
		}
		if len(s.parts) > len(t.parts) {
			return false
		}
		for j := range s.parts {
			p, q := &s.parts[j], &t.parts[j]
			final := j < len(s.parts)-1 || i < len(a.steps)-1 || s.finished || !p.open
			if final && !samePart(p, q) || !final && !partGrows(p, q) {
				return false
			}
		}
	}
	return true
}

// partGrows reports whether q may be what the open part p becomes.
func partGrows(p, q *part) bool {
	if p.kind != q.kind || p.id != q.id || p.name != q.name {
		return false
	}
	if p.kind == "tool" && !q.open {
		return true // its whole input came; a streamed start of it is no promise
	}
	return strings.HasPrefix(q.text, p.text)
}

func sameJSON(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// render is the chunks that build steps[from:] of v in a client whose
// current step is empty: the first of them goes into that step, each
// further one into a step of its own.
func (v *view) render(from int) []chunk {
	var cs []chunk
	for i := from; i < len(v.steps); i++ {
		s := &v.steps[i]
		if i > from {
			cs = append(cs, chunk{Type: "start-step"})
		}
		for j := range s.parts {
			cs = s.parts[j].render(cs)
		}
		if s.finished {
			cs = append(cs, chunk{Type: "finish-step"})
		}
	}
	return cs
}

// render appends the chunks that build p.
func (p *part) render(cs []chunk) []chunk {
	switch p.kind {
	case "text", "reasoning":
		cs = append(cs, chunk{Type: p.kind + "-start", ID: p.id})
		if p.text != "" {
			cs = append(cs, chunk{Type: p.kind + "-delta", ID: p.id, Delta: str(p.text)})
		}
		if !p.open {
			cs = append(cs, chunk{Type: p.kind + "-end", ID: p.id})
		}
	case "tool":
		if p.open {
			cs = append(cs, chunk{Type: "tool-input-start", ToolCallID: p.id, ToolName: p.name})
			if p.text != "" {
				cs = append(cs, chunk{Type: "tool-input-delta", ToolCallID: p.id, InputTextDelta: str(p.text)})
			}
		} else {
			cs = append(cs, chunk{Type: "tool-input-available", ToolCallID: p.id, ToolName: p.name, Input: p.input})
		}
		if p.approval != "" {
			cs = append(cs, chunk{Type: "tool-approval-request", ApprovalID: p.approval, ToolCallID: p.id})
		}
		switch {
		case p.failed:
			cs = append(cs, chunk{Type: "tool-output-error", ToolCallID: p.id, ErrorText: p.errText})
		case p.output != nil:
			cs = append(cs, chunk{Type: "tool-output-available", ToolCallID: p.id, Output: p.output})
		}
	case "source":
		if p.url != "" {
			cs = append(cs, chunk{Type: "source-url", SourceID: p.id, URL: p.url, Title: p.title})
		} else {
			cs = append(cs, chunk{Type: "source-document", SourceID: p.id, MediaType: p.media, Title: p.title})
		}
	}
	return cs
}
