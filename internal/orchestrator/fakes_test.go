package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// The worker's test doubles: an in-memory queue and event history that keeps
// what the bus keeps (claims compare-and-set like its attempts bucket,
// publishes with a message id deduplicated), deliveries that remember how
// they were settled, a provider that plays a script, and a toolbox whose
// tools are scripted too.

var _ Queue = (*fakeQueue)(nil)

// fakeQueue is the bus in memory. Every change wakes waitFor.
type fakeQueue struct {
	requests chan *fakeDelivery

	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, on every change
	events  []chat.Event  // the history; an event's seq is its index + 1
	msgIDs  map[string]uint64
	// announced are the events delivered live without being stored.
	announced   []chat.Event
	turns       []chat.Turn
	claims      map[string]*fakeClaim
	watches     map[string]map[*func(uint64)]struct{}
	cancels     map[string]bool
	onCancel    func(session, request string)
	onExhausted func(req chat.Request, deliveries uint64) error
	deadLetters []chat.DeadLetter
	// full makes every write fail for lack of space, as a full disk does;
	// refused counts the writes it failed.
	full    bool
	refused int
	// quietClaims keeps a new claim from the watches, as when the
	// notification is lost: the older attempt learns it lost at commit.
	quietClaims bool
	approvals   map[string]chat.ApprovalRecord
}

type fakeClaim struct {
	attempt  uint64
	final    *chat.Event
	revision uint64
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{
		requests: make(chan *fakeDelivery, 16),
		changed:  make(chan struct{}),
		msgIDs:   make(map[string]uint64),
		claims:   make(map[string]*fakeClaim),
		watches:  make(map[string]map[*func(uint64)]struct{}),
		cancels:  make(map[string]bool),
	}
}

func fakeKey(session, request string) string { return session + "." + request }

// changedLocked wakes every waitFor; q.mu is held.
func (q *fakeQueue) changedLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// waitFor returns once cond, called with q.mu held, is true. It fails the
// test if that takes longer than any answer here may (a hung worker).
func (q *fakeQueue) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		q.mu.Lock()
		ok := cond()
		changed := q.changed
		q.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// deliver hands req to the workers as the given attempt.
func (q *fakeQueue) deliver(req chat.Request, attempt uint64) *fakeDelivery {
	d := &fakeDelivery{q: q, req: req, attempt: attempt}
	q.requests <- d
	return d
}

// cancel is the user stopping a request, as the bus's Cancel.
func (q *fakeQueue) cancel(session, request string) {
	q.mu.Lock()
	q.cancels[fakeKey(session, request)] = true
	fn := q.onCancel
	q.changedLocked()
	q.mu.Unlock()
	if fn != nil {
		fn(session, request)
	}
}

// exhaust says req's deliveries ran out, as the bus's advisory does.
func (q *fakeQueue) exhaust(req chat.Request, deliveries uint64) error {
	q.mu.Lock()
	fn := q.onExhausted
	q.mu.Unlock()
	return fn(req, deliveries)
}

func (q *fakeQueue) setFull(full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.full = full
	q.changedLocked()
}

// stored returns the history of request, in order.
func (q *fakeQueue) stored(request string) []chat.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.storedLocked(request)
}

func (q *fakeQueue) storedLocked(request string) []chat.Event {
	var out []chat.Event
	for _, ev := range q.events {
		if ev.RequestID == request {
			out = append(out, ev)
		}
	}
	return out
}

// hasEvent reports whether evs hold an event of type t.
func hasEvent(evs []chat.Event, t chat.EventType) bool {
	return slices.ContainsFunc(evs, func(ev chat.Event) bool { return ev.Type == t })
}

// turn is the conversation's record of the answer to request.
func (q *fakeQueue) turn(session, request string) (chat.Turn, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var c chat.Conversation
	for _, t := range q.turns {
		c.Apply(t)
	}
	for _, t := range c.Turns {
		if t.RequestID == request && t.Role == chat.RoleAssistant {
			return t, true
		}
	}
	return chat.Turn{}, false
}

func (q *fakeQueue) NextRequest(ctx context.Context) (chat.Delivery, error) {
	select {
	case d := <-q.requests:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *fakeQueue) PublishEvent(_ context.Context, ev chat.Event, msgID string) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full {
		q.refused++
		q.changedLocked()
		return 0, fmt.Errorf("publish %s event: %w", ev.Type, chat.ErrStorageFull)
	}
	if seq, ok := q.msgIDs[msgID]; ok && msgID != "" {
		return seq, nil
	}
	seq := q.appendLocked(ev)
	if msgID != "" {
		q.msgIDs[msgID] = seq
	}
	return seq, nil
}

func (q *fakeQueue) PublishEventAfter(_ context.Context, ev chat.Event, after uint64) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full {
		q.refused++
		q.changedLocked()
		return 0, fmt.Errorf("publish %s event: %w", ev.Type, chat.ErrStorageFull)
	}
	if after == 0 || after > uint64(len(q.events)) {
		return 0, fmt.Errorf("publish %s event after %d: no such event", ev.Type, after)
	}
	return q.appendLocked(ev), nil
}

func (q *fakeQueue) appendLocked(ev chat.Event) uint64 {
	ev.Seq = uint64(len(q.events)) + 1
	q.events = append(q.events, ev)
	q.changedLocked()
	return ev.Seq
}

func (q *fakeQueue) Announce(ev chat.Event) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.announced = append(q.announced, ev)
	q.changedLocked()
	return nil
}

func (q *fakeQueue) AppendTurn(_ context.Context, session string, t chat.Turn) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full {
		q.refused++
		q.changedLocked()
		return fmt.Errorf("append turn: %w", chat.ErrStorageFull)
	}
	q.turns = append(q.turns, t)
	q.changedLocked()
	return nil
}

func (q *fakeQueue) Conversation(_ context.Context, session string) (chat.Conversation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := chat.Conversation{SessionID: session}
	for _, t := range q.turns {
		c.Apply(t)
	}
	return c, nil
}

func (q *fakeQueue) ClaimAttempt(_ context.Context, session, request string, min uint64) (chat.Claim, error) {
	key := fakeKey(session, request)
	q.mu.Lock()
	c := q.claims[key]
	switch {
	case c == nil:
		c = &fakeClaim{attempt: min}
		q.claims[key] = c
	case c.final != nil:
		q.mu.Unlock()
		return chat.Claim{Attempt: c.attempt, Final: c.final}, nil
	default:
		c.attempt = max(min, c.attempt+1)
	}
	c.revision++
	claim := chat.Claim{Attempt: c.attempt, Revision: c.revision}
	watches := q.watchesLocked(key)
	if q.quietClaims {
		watches = nil
	}
	q.changedLocked()
	q.mu.Unlock()
	for _, fn := range watches {
		fn(claim.Attempt)
	}
	return claim, nil
}

func (q *fakeQueue) watchesLocked(key string) []func(uint64) {
	var out []func(uint64)
	for fn := range q.watches[key] {
		out = append(out, *fn)
	}
	return out
}

func (q *fakeQueue) CommitAttempt(_ context.Context, session, request string, c chat.Claim, end chat.Event) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full {
		q.refused++
		q.changedLocked()
		return fmt.Errorf("commit end of %s: %w", request, chat.ErrStorageFull)
	}
	cur := q.claims[fakeKey(session, request)]
	if cur == nil || cur.revision != c.Revision {
		return chat.ErrSuperseded
	}
	cur.final = &end
	cur.revision++
	q.changedLocked()
	return nil
}

func (q *fakeQueue) WatchAttempts(session, request string, fn func(attempt uint64)) (stop func(), err error) {
	key := fakeKey(session, request)
	q.mu.Lock()
	if q.watches[key] == nil {
		q.watches[key] = make(map[*func(uint64)]struct{})
	}
	q.watches[key][&fn] = struct{}{}
	var current uint64
	if c := q.claims[key]; c != nil {
		current = c.attempt
	}
	q.mu.Unlock()
	if current > 0 {
		fn(current)
	}
	return func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		delete(q.watches[key], &fn)
	}, nil
}

func (q *fakeQueue) Cancelled(_ context.Context, session, request string) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cancels[fakeKey(session, request)], nil
}

func (q *fakeQueue) WatchCancels(fn func(session, request string)) (stop func(), err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.onCancel = fn
	q.changedLocked()
	return func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.onCancel = nil
	}, nil
}

func (q *fakeQueue) WatchExhausted(fn func(req chat.Request, deliveries uint64) error) (stop func(), err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.onExhausted = fn
	q.changedLocked()
	return func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.onExhausted = nil
	}, nil
}

func (q *fakeQueue) RecordDeadLetter(_ context.Context, d chat.DeadLetter) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadLetters = append(q.deadLetters, d)
	q.changedLocked()
	return nil
}

var _ chat.Delivery = (*fakeDelivery)(nil)

// fakeDelivery remembers how the worker settled it; its counts are guarded
// by its queue's mu.
type fakeDelivery struct {
	q       *fakeQueue
	req     chat.Request
	attempt uint64

	acked, released int
}

func (d *fakeDelivery) Request() chat.Request { return d.req }
func (d *fakeDelivery) Attempt() uint64       { return d.attempt }
func (d *fakeDelivery) InProgress() error     { return nil }

func (d *fakeDelivery) Ack(context.Context) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	d.acked++
	d.q.changedLocked()
	return nil
}

func (d *fakeDelivery) Release(context.Context, time.Duration) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	d.released++
	d.q.changedLocked()
	return nil
}

// settled reports whether the worker acked or released d; q.mu is held.
func (d *fakeDelivery) settled() bool { return d.acked+d.released > 0 }

// step is one provider call of a script.
type step func(ctx context.Context, emit func(chat.Part) error) (chat.Final, error)

// fakeProvider plays one step per call, the last one again once the script
// runs out.
type fakeProvider struct {
	script []step

	mu      sync.Mutex
	calls   int
	prompts []chat.Prompt
}

func script(steps ...step) *fakeProvider { return &fakeProvider{script: steps} }

func (p *fakeProvider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	p.mu.Lock()
	s := p.script[min(p.calls, len(p.script)-1)]
	p.calls++
	p.prompts = append(p.prompts, prompt)
	p.mu.Unlock()
	return s(ctx, emit)
}

// prompt is what call n (from 0) was asked.
func (p *fakeProvider) prompt(t *testing.T, n int) chat.Prompt {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if n >= len(p.prompts) {
		t.Fatalf("the provider was called %d times, not %d", len(p.prompts), n+1)
	}
	return p.prompts[n]
}

func (p *fakeProvider) called() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// answers emits chunks, then ends the answer.
func answers(chunks ...string) step {
	return func(_ context.Context, emit func(chat.Part) error) (chat.Final, error) {
		if err := emitAll(emit, chunks); err != nil {
			return chat.Final{}, err
		}
		return chat.Final{Usage: chat.Usage{OutputTokens: len(chunks)}, StopReason: "end_turn"}, nil
	}
}

// fails emits chunks, then fails with err.
func fails(err error, chunks ...string) step {
	return func(_ context.Context, emit func(chat.Part) error) (chat.Final, error) {
		if err := emitAll(emit, chunks); err != nil {
			return chat.Final{}, err
		}
		return chat.Final{}, err
	}
}

// hangs emits chunks, closes emitted, then waits for its call to be
// stopped; stopped receives why it was.
func hangs(emitted chan<- struct{}, stopped chan<- error, chunks ...string) step {
	return func(ctx context.Context, emit func(chat.Part) error) (chat.Final, error) {
		if err := emitAll(emit, chunks); err != nil {
			return chat.Final{}, err
		}
		if emitted != nil {
			close(emitted)
		}
		<-ctx.Done()
		if stopped != nil {
			stopped <- context.Cause(ctx)
		}
		return chat.Final{}, ctx.Err()
	}
}

// pauses emits before, closes emitted, waits for resume, then emits after
// and ends the answer, whatever happened to its call meanwhile: only a
// stop of the call (a shutdown) ends the wait otherwise.
func pauses(emitted chan<- struct{}, resume <-chan struct{}, before, after string) step {
	return func(ctx context.Context, emit func(chat.Part) error) (chat.Final, error) {
		if err := emit(chat.TextPart(before)); err != nil {
			return chat.Final{}, err
		}
		close(emitted)
		select {
		case <-resume:
		case <-ctx.Done():
			return chat.Final{}, ctx.Err()
		}
		if err := emit(chat.TextPart(after)); err != nil {
			return chat.Final{}, err
		}
		return chat.Final{Usage: chat.Usage{OutputTokens: 2}, StopReason: "end_turn"}, nil
	}
}

func emitAll(emit func(chat.Part) error, chunks []string) error {
	for _, c := range chunks {
		if err := emit(chat.TextPart(c)); err != nil {
			return err
		}
	}
	return nil
}

// fakeRecorder keeps how answers ended, as "outcome" or "outcome:code".
type fakeRecorder struct {
	noRecorder

	mu       sync.Mutex
	answered []string
}

func (r *fakeRecorder) Answered(_ string, outcome chat.EventType, code string, _ chat.Usage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := string(outcome)
	if code != "" {
		s += ":" + code
	}
	r.answered = append(r.answered, s)
}

func (r *fakeRecorder) outcomes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.answered)
}

// RequestApproval stores a pending approval unless one is stored.
func (q *fakeQueue) RequestApproval(_ context.Context, session, request string, info chat.ApprovalInfo) (chat.ApprovalRecord, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.approvals == nil {
		q.approvals = make(map[string]chat.ApprovalRecord)
	}
	key := fakeKey(session, request) + "." + info.CallID
	if rec, ok := q.approvals[key]; ok {
		return rec, nil
	}
	q.approvals[key] = chat.ApprovalRecord{ApprovalInfo: info}
	q.changedLocked()
	return q.approvals[key], nil
}

// WaitApproval waits until answer is called for the call.
func (q *fakeQueue) WaitApproval(ctx context.Context, session, request, call string) (chat.ApprovalRecord, error) {
	key := fakeKey(session, request) + "." + call
	for {
		q.mu.Lock()
		rec, changed := q.approvals[key], q.changed
		q.mu.Unlock()
		if rec.Answered {
			return rec, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return rec, ctx.Err()
		}
	}
}

// answer answers a pending approval, as the session's owner does.
func (q *fakeQueue) answer(session, request, call string, approved bool, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := fakeKey(session, request) + "." + call
	rec := q.approvals[key]
	rec.Answered, rec.Approved, rec.Reason = true, approved, reason
	q.approvals[key] = rec
	q.changedLocked()
}

// emits emits parts, then ends the model call as final says.
func emits(final chat.Final, parts ...chat.Part) step {
	return func(_ context.Context, emit func(chat.Part) error) (chat.Final, error) {
		for _, p := range parts {
			if err := emit(p); err != nil {
				return chat.Final{}, err
			}
		}
		return final, nil
	}
}

// callsTools is a model call that asks for the tool calls given by parts
// (see toolCall) and stops for their results.
func callsTools(usage chat.Usage, parts ...[]chat.Part) step {
	return emits(chat.Final{Usage: usage, StopReason: "tool_use"}, slices.Concat(parts...)...)
}

// toolCall is a tool call as a provider streams it: its start, its input
// in the fragments given, its end.
func toolCall(id, name string, input ...string) []chat.Part {
	parts := []chat.Part{{Kind: chat.PartToolStart, CallID: id, Name: name}}
	for _, in := range input {
		parts = append(parts, chat.Part{Kind: chat.PartToolDelta, CallID: id, Text: in})
	}
	return append(parts, chat.Part{Kind: chat.PartToolEnd, CallID: id})
}

var _ Toolbox = (*fakeToolbox)(nil)

// tool is one tool of a fakeToolbox.
type tool func(ctx context.Context, input json.RawMessage) (ToolResult, error)

// fakeToolbox runs its tools by name and counts the calls of each; a name
// it has no tool for cannot be run, as a tool server that does not know it.
type fakeToolbox struct {
	tools map[string]tool

	mu     sync.Mutex
	inputs map[string][]string // of each call, by tool
}

func toolbox(tools map[string]tool) *fakeToolbox {
	return &fakeToolbox{tools: tools, inputs: make(map[string][]string)}
}

func (b *fakeToolbox) Call(ctx context.Context, name string, input json.RawMessage) (ToolResult, error) {
	b.mu.Lock()
	b.inputs[name] = append(b.inputs[name], string(input))
	run := b.tools[name]
	b.mu.Unlock()
	if run == nil {
		return ToolResult{}, fmt.Errorf("no tool named %q here", name)
	}
	return run(ctx, input)
}

// called is how many times the tool was called.
func (b *fakeToolbox) called(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.inputs[name])
}

// input is the input of each call of the tool, in order.
func (b *fakeToolbox) input(name string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.inputs[name])
}

// replies is a tool that answers output.
func replies(output string) tool {
	return func(context.Context, json.RawMessage) (ToolResult, error) {
		return ToolResult{Output: output}, nil
	}
}

// failsWith is a tool that runs and fails, saying output.
func failsWith(output string) tool {
	return func(context.Context, json.RawMessage) (ToolResult, error) {
		return ToolResult{Output: output, IsError: true}, nil
	}
}

// cannotRun is a tool that cannot be run at all.
func cannotRun(err error) tool {
	return func(context.Context, json.RawMessage) (ToolResult, error) {
		return ToolResult{}, err
	}
}

// blocks is a tool that closes started (when not nil), then waits for its
// call to be stopped; stopped receives why it was.
func blocks(started chan<- struct{}, stopped chan<- error) tool {
	return func(ctx context.Context, _ json.RawMessage) (ToolResult, error) {
		if started != nil {
			close(started)
		}
		<-ctx.Done()
		stopped <- context.Cause(ctx)
		return ToolResult{Output: "too late"}, nil
	}
}

// together returns tools that each answer their output only once n calls
// of them have begun: calls run one after another never get there.
func together(n int) func(output string) tool {
	var mu sync.Mutex
	all := make(chan struct{})
	return func(output string) tool {
		return func(ctx context.Context, _ json.RawMessage) (ToolResult, error) {
			mu.Lock()
			if n--; n == 0 {
				close(all)
			}
			mu.Unlock()
			select {
			case <-all:
				return ToolResult{Output: output}, nil
			case <-ctx.Done():
				return ToolResult{}, context.Cause(ctx)
			}
		}
	}
}
