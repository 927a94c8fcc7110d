package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tokencast/tokencast/internal/chat"
)

// Toolbox runs the tools a model may call.
type Toolbox interface {
	// Call runs a tool. An error is a failure to run it at all (unknown
	// tool, unreachable server); a tool that ran and failed says so in
	// the result.
	Call(ctx context.Context, name string, input json.RawMessage) (ToolResult, error)
}

// ToolResult is what a tool answered.
type ToolResult struct {
	Output  string
	IsError bool
}

// ToolPolicy is how a tool may be run.
type ToolPolicy struct {
	// Approval: a person approves each call first.
	Approval bool
	// NonIdempotent: a call that may have run already (its worker died
	// mid-call) is not run again without approval.
	NonIdempotent bool
	// Timeout bounds one call; 0 is the run's default.
	Timeout time.Duration
}

// Agent bounds agent runs; each bound hit ends the run with a stable code.
type Agent struct {
	// MaxSteps bounds the model calls of one run (STEP_LIMIT).
	MaxSteps int
	// ToolTimeout bounds one tool call; the model is told it timed out.
	ToolTimeout time.Duration
	// RunTimeout bounds a whole run, approvals excluded (RUN_TIMEOUT).
	RunTimeout time.Duration
	// MaxToolOutput caps a tool result in bytes; the rest is cut with a
	// visible mark.
	MaxToolOutput int
	// ApprovalTimeout is how long an approval may wait; then the call is
	// denied and the model told so.
	ApprovalTimeout time.Duration
	// MaxParallelTools bounds the calls of one step run at once.
	MaxParallelTools int
}

func (g *Agent) defaults() {
	if g.MaxSteps <= 0 {
		g.MaxSteps = 10
	}
	if g.ToolTimeout <= 0 {
		g.ToolTimeout = 30 * time.Second
	}
	if g.RunTimeout <= 0 {
		g.RunTimeout = 10 * time.Minute
	}
	if g.MaxToolOutput <= 0 {
		g.MaxToolOutput = 16 << 10
	}
	if g.ApprovalTimeout <= 0 {
		g.ApprovalTimeout = 24 * time.Hour
	}
	if g.MaxParallelTools <= 0 {
		g.MaxParallelTools = 8
	}
}

var (
	errRunTimeout = errors.New("the agent run took too long")
	errNoToolbox  = errors.New("no toolbox")
)

// run is the agent side of an answer: the blocks of the model call in
// progress, turned into typed events as they stream, and the tool calls
// between model calls. An answer without tools is a run of one step.
type run struct {
	o     *Orchestrator
	a     *answer
	model Model
	// pubCtx is where events are published: the answer's context, which a
	// user's cancel does not end.
	pubCtx context.Context
	text   *coalescer // DELTA
	think  *coalescer // REASONING
	last   chat.PartKind

	step   int
	blocks []chat.Block // of the model call in progress
	// openKind and openText are the text or reasoning block still
	// streaming, not yet in blocks.
	openKind chat.BlockKind
	openText strings.Builder
	calls    map[string]int
	// usage sums the run's model calls.
	usage chat.Usage

	storeMu sync.Mutex // one turn record written at a time
	// clock ends the run after its time, approvals' waits excluded.
	clock *runClock
}

// runClock calls expire once a run has taken its time. Waiting for an
// approval does not count: an approval may come hours later.
type runClock struct {
	mu     sync.Mutex
	left   time.Duration
	since  time.Time
	paused int
	timer  *time.Timer
	expire func()
}

func startClock(d time.Duration, expire func()) *runClock {
	return &runClock{left: d, since: time.Now(), timer: time.AfterFunc(d, expire), expire: expire}
}

// pause stops the clock until every pause has its resume.
func (c *runClock) pause() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused++
	if c.paused == 1 && c.timer.Stop() {
		c.left -= time.Since(c.since)
	}
}

func (c *runClock) resume() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused--
	if c.paused == 0 {
		c.since = time.Now()
		c.timer = time.AfterFunc(max(c.left, 0), c.expire)
	}
}

func (c *runClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer.Stop()
}

func newRun(o *Orchestrator, a *answer, m Model, pubCtx context.Context) *run {
	r := &run{o: o, a: a, model: m, pubCtx: pubCtx}
	r.text = newCoalescer(o.cfg.Coalescing, func(text string) error { return a.delta(pubCtx, text) })
	r.think = newCoalescer(o.cfg.Coalescing, func(text string) error {
		err := a.publish(pubCtx, a.event(chat.EventReasoning, text))
		return err
	})
	return r
}

// flush publishes buffered text and reasoning before an event of another
// kind.
func (r *run) flush() error {
	return errors.Join(r.text.Flush(), r.think.Flush())
}

// close flushes and stops both coalescers.
func (r *run) close() error {
	err := errors.Join(r.text.Close(), r.think.Close())
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}

// appendText adds streamed text to the step's open text or reasoning
// block, or opens a new one. The open block is a builder: an answer of
// megabytes is not copied once per token.
func (r *run) appendText(k chat.BlockKind, s string) {
	if r.openKind != k {
		r.closeOpen()
		r.openKind = k
	}
	r.openText.WriteString(s)
}

// closeOpen adds the open text or reasoning block to the step's blocks.
func (r *run) closeOpen() {
	if r.openKind == "" {
		return
	}
	r.blocks = append(r.blocks, chat.Block{Kind: r.openKind, Text: r.openText.String()})
	r.openText.Reset()
	r.openKind = ""
}

// onPart takes one part of the model's output: it is kept for the step's
// message and published as its event.
func (r *run) onPart(p chat.Part) error {
	a := r.a
	defer func() { r.last = p.Kind }()
	switch p.Kind {
	case chat.PartText:
		if r.last == chat.PartReasoning {
			if err := r.think.Flush(); err != nil {
				return err
			}
		}
		a.text.WriteString(p.Text)
		r.appendText(chat.BlockText, p.Text)
		return r.text.Add(p.Text)
	case chat.PartReasoning:
		if r.last == chat.PartText {
			if err := r.text.Flush(); err != nil {
				return err
			}
		}
		r.appendText(chat.BlockReasoning, p.Text)
		return r.think.Add(p.Text)
	case chat.PartSignature:
		r.closeOpen()
		for i := len(r.blocks) - 1; i >= 0; i-- {
			if r.blocks[i].Kind == chat.BlockReasoning {
				r.blocks[i].Signature += p.Text
				return nil
			}
		}
		// A signature with no reasoning text (a provider may sign an
		// empty block): kept all the same.
		r.blocks = append(r.blocks, chat.Block{Kind: chat.BlockReasoning, Signature: p.Text})
		return nil
	case chat.PartRedacted:
		r.closeOpen()
		r.blocks = append(r.blocks, chat.Block{Kind: chat.BlockRedacted, Data: append([]byte(nil), p.Data...)})
		return nil
	case chat.PartToolStart:
		if err := r.flush(); err != nil {
			return err
		}
		r.closeOpen()
		if _, open := r.calls[p.CallID]; open || p.CallID == "" {
			return fmt.Errorf("tool call %q started twice or without an id", p.CallID)
		}
		if r.calls == nil {
			r.calls = make(map[string]int)
		}
		r.calls[p.CallID] = len(r.blocks)
		r.blocks = append(r.blocks, chat.Block{Kind: chat.BlockToolCall, CallID: p.CallID, Name: p.Name})
		ev := a.event(chat.EventToolCallStart, "")
		ev.Tool = &chat.ToolEvent{CallID: p.CallID, Name: p.Name}
		err := a.publish(r.pubCtx, ev)
		return err
	case chat.PartToolDelta:
		i, ok := r.calls[p.CallID]
		if !ok {
			return fmt.Errorf("input for tool call %q that never started", p.CallID)
		}
		if err := r.flush(); err != nil {
			return err
		}
		r.blocks[i].Input = append(r.blocks[i].Input, p.Text...)
		ev := a.event(chat.EventToolCallDelta, p.Text)
		ev.Tool = &chat.ToolEvent{CallID: p.CallID}
		err := a.publish(r.pubCtx, ev)
		return err
	case chat.PartToolEnd:
		return r.endCall(p.CallID)
	case chat.PartSource:
		if p.Source == nil {
			return nil
		}
		if err := r.flush(); err != nil {
			return err
		}
		r.closeOpen()
		src := *p.Source
		r.blocks = append(r.blocks, chat.Block{Kind: chat.BlockSource, Source: &src})
		ev := a.event(chat.EventSource, "")
		ev.Source = &src
		err := a.publish(r.pubCtx, ev)
		return err
	}
	return nil
}

// endCall completes a tool call's input and publishes TOOL_CALL, once.
func (r *run) endCall(id string) error {
	i, ok := r.calls[id]
	if !ok {
		return fmt.Errorf("end of tool call %q that never started", id)
	}
	delete(r.calls, id)
	b := &r.blocks[i]
	b.Input = normalizeInput(b.Input)
	ev := r.a.event(chat.EventToolCall, "")
	ev.Tool = &chat.ToolEvent{CallID: b.CallID, Name: b.Name, Input: b.Input}
	err := r.a.publish(r.pubCtx, ev)
	return err
}

// normalizeInput is a call's input as stored and sent back: an empty input
// is the empty object; input that is not JSON is kept as a JSON string, so
// the message stays valid and the tool is told.
func normalizeInput(in json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(in))
	if s == "" {
		return json.RawMessage("{}")
	}
	if !json.Valid([]byte(s)) {
		q, _ := json.Marshal(s)
		return q
	}
	return json.RawMessage(s)
}

// endStep closes the model call: buffered text is published, every call
// still open is complete. It returns the step's assistant message.
func (r *run) endStep() (chat.Message, error) {
	r.closeOpen()
	if err := r.flush(); err != nil {
		return chat.Message{}, err
	}
	for _, b := range r.blocks {
		if b.Kind == chat.BlockToolCall {
			if _, open := r.calls[b.CallID]; open {
				if err := r.endCall(b.CallID); err != nil {
					return chat.Message{}, err
				}
			}
		}
	}
	msg := chat.Message{Role: chat.RoleAssistant, Blocks: r.blocks}
	r.blocks, r.calls = nil, nil
	return msg, nil
}

// toolCalls are the calls of an assistant message.
func toolCalls(m chat.Message) []chat.Block {
	var out []chat.Block
	for _, b := range m.Blocks {
		if b.Kind == chat.BlockToolCall {
			out = append(out, b)
		}
	}
	return out
}

// withoutToolCalls is m without its tool calls.
func withoutToolCalls(m chat.Message) chat.Message {
	var kept []chat.Block
	for _, b := range m.Blocks {
		if b.Kind != chat.BlockToolCall {
			kept = append(kept, b)
		}
	}
	m.Blocks = kept
	return m
}

// publishStep says a model call ended, with its usage.
func (r *run) publishStep(reason string, continues bool, usage chat.Usage) error {
	ev := r.a.event(chat.EventStep, "")
	ev.Step = &chat.StepInfo{Number: r.step, Reason: reason, Continues: continues}
	ev.Usage = &usage
	err := r.a.publish(r.pubCtx, ev)
	return err
}

// storeBeforeTools says a step's calls must be stored before they run: one
// is declared not idempotent, or waits for approval.
func (r *run) storeBeforeTools(calls []chat.Block) bool {
	for _, c := range calls {
		if pol := r.model.Policies[c.Name]; pol.Approval || pol.NonIdempotent {
			return true
		}
	}
	return false
}

// storeProgress writes the run so far as the answer's IN_PROGRESS turn: a
// worker that takes over goes on from it.
func (r *run) storeProgress(msgs []chat.Message) error {
	r.storeMu.Lock()
	defer r.storeMu.Unlock()
	a := r.a
	return a.appendTurn(r.pubCtx, chat.Turn{
		RequestID: a.req.ID, Role: chat.RoleAssistant, Text: a.text.String(),
		Status: chat.StatusInProgress, Locale: a.req.Locale, Model: a.model,
		At: time.Now().UTC(), Attempt: a.attempt, Run: msgs,
	})
}

// runTools runs the calls of one step, in parallel up to the bound, and
// returns their results in call order. done holds results a worker before
// this one stored; those calls are not run again. inFlight says the calls
// may have started before (a worker died mid-step). When the run stops
// (an error), every call is given a result all the same, the run's own
// for the calls it cut short: a model refuses a history with a call left
// unanswered, and the turn keeps the run for the next question's prompt.
func (r *run) runTools(ctx context.Context, assistant chat.Message, calls []chat.Block, done map[string]chat.Block, inFlight bool) ([]chat.Block, error) {
	a := r.a
	results := make([]chat.Block, len(calls))
	have := make([]bool, len(calls))
	for i, c := range calls {
		if res, ok := done[c.CallID]; ok {
			results[i], have[i] = res, true
		}
	}
	var mu sync.Mutex
	stored := func() []chat.Message {
		var got []chat.Block
		for i := range results {
			if have[i] {
				got = append(got, results[i])
			}
		}
		msgs := append(append([]chat.Message(nil), a.run...), assistant)
		if len(got) > 0 {
			msgs = append(msgs, chat.Message{Role: chat.RoleUser, Blocks: got})
		}
		return msgs
	}
	sem := make(chan struct{}, r.o.cfg.Agent.MaxParallelTools)
	var wg sync.WaitGroup
	var errs []error
	for i, c := range calls {
		if have[i] {
			continue
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			res, err := r.callTool(ctx, c, inFlight)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			// Stored before it is shown and before the next model call:
			// a worker that takes over never runs this call again. The
			// results are stored one at a time, each record holding every
			// result in so far.
			mu.Lock()
			results[i], have[i] = res, true
			if err := r.storeProgress(stored()); err != nil {
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			mu.Unlock()
			ev := a.event(chat.EventToolResult, "")
			ev.Tool = &chat.ToolEvent{CallID: c.CallID, Name: c.Name, Output: res.Text, IsError: res.IsError, Truncated: res.Truncated, DurationMillis: res.DurationMillis}
			if err := a.publish(r.pubCtx, ev); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		for i, c := range calls {
			if !have[i] {
				results[i] = stoppedResult(c)
			}
		}
	}
	return results, err
}

// stoppedResult answers a call the run stopped before it had a result.
func stoppedResult(c chat.Block) chat.Block {
	return chat.Block{Kind: chat.BlockToolResult, CallID: c.CallID, Name: c.Name, IsError: true,
		Text: "the run stopped before this tool call had a result"}
}

// errToolStopped is a tool call that stopped because the run did.
var errToolStopped = errors.New("tool call stopped with the run")

// callTool runs one call under its policy and bounds. The result is what
// the model is told, failures included; an error stops the run (a cancel, a
// store that fails).
func (r *run) callTool(ctx context.Context, c chat.Block, inFlight bool) (chat.Block, error) {
	a := r.a
	res := chat.Block{Kind: chat.BlockToolResult, CallID: c.CallID, Name: c.Name}
	pol, allowed := r.model.Policies[c.Name], r.allowed(c.Name)
	if !allowed {
		res.Text, res.IsError = fmt.Sprintf("there is no tool named %q", c.Name), true
		return res, nil
	}
	if pol.Approval || (inFlight && pol.NonIdempotent) {
		why := ""
		if !pol.Approval {
			why = "this call may have run already, before its worker stopped; run it again?"
		}
		ok, reason, err := r.approve(ctx, c, why)
		if err != nil {
			return res, err
		}
		if !ok {
			res.Text, res.IsError = "the user denied this tool call", true
			if reason != "" {
				res.Text += ": " + reason
			}
			return res, nil
		}
	}
	timeout := pol.Timeout
	if timeout <= 0 {
		timeout = r.o.cfg.Agent.ToolTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	ref := c.Name
	if full, ok := r.model.ToolRefs[c.Name]; ok {
		ref = full
	}
	out, err := r.o.cfg.Tools.Call(tctx, ref, c.Input)
	res.DurationMillis = float64(time.Since(start).Microseconds()) / 1000
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("%w: %w", errToolStopped, context.Cause(ctx))
	case tctx.Err() != nil:
		res.Text, res.IsError = fmt.Sprintf("the tool did not answer within %s", timeout), true
	case err != nil:
		a.log.Warn("tool call failed", "tool", c.Name, "call", c.CallID, "err", err)
		res.Text, res.IsError = "the tool could not be run", true
	default:
		res.Text, res.IsError = out.Output, out.IsError
	}
	res.Text, res.Truncated = truncate(res.Text, r.o.cfg.Agent.MaxToolOutput)
	return res, nil
}

// allowed reports whether the model may call the tool.
func (r *run) allowed(name string) bool {
	if r.o.cfg.Tools == nil {
		return false
	}
	for _, t := range r.model.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// truncate cuts s to at most max bytes on a rune boundary, with a mark that
// says how much was cut.
func truncate(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[truncated: %d more bytes]", len(s)-cut), true
}

// approve asks the session's owner to approve a call and waits for the
// answer, at most the approval timeout: then the call is denied. The
// request is stored, so it survives every process; a worker that takes the
// run over finds it, answered or not.
func (r *run) approve(ctx context.Context, c chat.Block, why string) (bool, string, error) {
	a := r.a
	expires := time.Now().Add(r.o.cfg.Agent.ApprovalTimeout).UTC()
	info := chat.ApprovalInfo{CallID: c.CallID, Tool: c.Name, Input: c.Input, Reason: why, Expires: expires.Format(time.RFC3339)}
	rec, err := r.o.queue.RequestApproval(ctx, a.req.SessionID, a.req.ID, info)
	if err != nil {
		return false, "", fmt.Errorf("request approval: %w", err)
	}
	if !rec.Answered {
		ev := a.event(chat.EventApprovalRequested, "")
		req := rec.ApprovalInfo
		req.Approved, req.Reason = false, why
		ev.Approval = &req
		if err := a.publish(r.pubCtx, ev); err != nil {
			return false, "", err
		}
		if exp, err := time.Parse(time.RFC3339, rec.Expires); err == nil {
			expires = exp
		}
		wctx, cancel := context.WithDeadline(ctx, expires)
		r.clock.pause()
		rec, err = r.o.queue.WaitApproval(wctx, a.req.SessionID, a.req.ID, c.CallID)
		r.clock.resume()
		cancel()
		switch {
		case ctx.Err() != nil:
			return false, "", fmt.Errorf("%w: %w", errToolStopped, context.Cause(ctx))
		case errors.Is(err, context.DeadlineExceeded):
			rec = chat.ApprovalRecord{ApprovalInfo: info, Answered: true}
			rec.Approved, rec.Reason = false, "nobody answered in time"
		case err != nil:
			return false, "", fmt.Errorf("wait for approval: %w", err)
		}
	}
	ev := a.event(chat.EventApproval, "")
	ans := rec.ApprovalInfo
	ev.Approval = &ans
	if err := a.publish(r.pubCtx, ev); err != nil {
		return false, "", err
	}
	return rec.Approved, rec.Reason, nil
}

// resume picks up the run a worker before this one stored: its events are
// published again (subscribers dropped what they had on RESTART), and the
// calls of its last step that have no result yet are run. It returns the
// messages to add to the prompt.
func (r *run) resume(ctx context.Context, stored []chat.Message) ([]chat.Message, error) {
	a := r.a
	var results map[string]chat.Block
	for i, m := range stored {
		switch m.Role {
		case chat.RoleAssistant:
			r.step++
			for _, b := range m.Blocks {
				if err := r.replayBlock(b); err != nil {
					return nil, err
				}
			}
			calls := toolCalls(m)
			var usage chat.Usage
			if m.Usage != nil {
				usage = *m.Usage
				r.usage.Add(usage)
			}
			if err := r.publishStep("tool_use", len(calls) > 0, usage); err != nil {
				return nil, err
			}
			results = nil
			if i+1 < len(stored) && stored[i+1].Role == chat.RoleUser {
				results = make(map[string]chat.Block)
				for _, b := range stored[i+1].Blocks {
					results[b.CallID] = b
				}
			}
		case chat.RoleUser:
			for _, b := range m.Blocks {
				ev := a.event(chat.EventToolResult, "")
				ev.Tool = &chat.ToolEvent{CallID: b.CallID, Name: b.Name, Output: b.Text, IsError: b.IsError, Truncated: b.Truncated, DurationMillis: b.DurationMillis}
				if err := a.publish(r.pubCtx, ev); err != nil {
					return nil, err
				}
			}
		}
	}
	// The last step: calls without a result were in flight, or not begun.
	var last chat.Message
	var prior []chat.Message
	switch n := len(stored); {
	case n > 0 && stored[n-1].Role == chat.RoleAssistant:
		last, prior = stored[n-1], stored[:n-1]
	case n > 1 && stored[n-1].Role == chat.RoleUser && len(stored[n-1].Blocks) < len(toolCalls(stored[n-2])):
		last, prior = stored[n-2], stored[:n-2]
	default:
		a.run = stored
		return stored, nil
	}
	a.run = prior
	calls := toolCalls(last)
	res, err := r.runTools(ctx, last, calls, results, true)
	a.run = append(append(prior, last), chat.Message{Role: chat.RoleUser, Blocks: res})
	if err != nil {
		return nil, err
	}
	return a.run, nil
}

// replayBlock publishes the events of a stored block.
func (r *run) replayBlock(b chat.Block) error {
	a := r.a
	var ev chat.Event
	switch b.Kind {
	case chat.BlockText:
		a.text.WriteString(b.Text)
		return a.delta(r.pubCtx, b.Text)
	case chat.BlockReasoning:
		if b.Text == "" {
			return nil
		}
		ev = a.event(chat.EventReasoning, b.Text)
	case chat.BlockToolCall:
		start := a.event(chat.EventToolCallStart, "")
		start.Tool = &chat.ToolEvent{CallID: b.CallID, Name: b.Name}
		if err := a.publish(r.pubCtx, start); err != nil {
			return err
		}
		ev = a.event(chat.EventToolCall, "")
		ev.Tool = &chat.ToolEvent{CallID: b.CallID, Name: b.Name, Input: b.Input}
	case chat.BlockSource:
		if b.Source == nil {
			return nil
		}
		ev = a.event(chat.EventSource, "")
		ev.Source = b.Source
	default:
		return nil
	}
	err := a.publish(r.pubCtx, ev)
	return err
}

// storedRun is the run an earlier attempt at the request stored, if any.
func storedRun(conv chat.Conversation, request string) []chat.Message {
	for _, t := range conv.Turns {
		if t.RequestID == request && t.Role == chat.RoleAssistant && t.Status == chat.StatusInProgress {
			return t.Run
		}
	}
	return nil
}

// runMessages is the run as the answer's turn keeps it: the stored steps
// and the last model call's message, when the answer had steps, reasoning
// or anything else than text. A run that stopped after a step's results
// has no last message; one that stopped before the step's calls ran has
// each answered by the run, as runTools does.
func (a *answer) runMessages(last chat.Message) []chat.Message {
	if len(last.Blocks) == 0 && last.Text == "" {
		if len(a.run) == 0 {
			return nil
		}
		return append([]chat.Message(nil), a.run...)
	}
	plain := len(a.run) == 0
	for _, b := range last.Blocks {
		if b.Kind != chat.BlockText {
			plain = false
		}
	}
	if plain {
		return nil
	}
	msgs := append(append([]chat.Message(nil), a.run...), last)
	if calls := toolCalls(last); len(calls) > 0 {
		res := make([]chat.Block, len(calls))
		for i, c := range calls {
			res[i] = stoppedResult(c)
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Blocks: res})
	}
	return msgs
}
