package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// loadTarget is what an open-loop run drives: a way to subscribe and a way
// to ask.
type loadTarget struct {
	name    string
	dialect Dialect
	asker   asker
}

// loadPlan is the shape of one run.
type loadPlan struct {
	Sessions    int
	Subscribers int
	// Gap is the time between two sessions' asks: the fixed arrival schedule.
	Gap time.Duration
	// Grace is how long after the last answer is due the run waits for it.
	Grace  time.Duration
	RunID  string
	Script Script
}

// subscriberState is what one subscriber saw of its session's answer.
type subscriberState struct {
	sub    Subscriber
	stream *stream
	ask    *atomic.Int64 // when the ask was sent
	want   string        // request id

	counts      []uint8 // receipts per token sequence number
	ttft        int64   // ns; -1 until the first token arrived
	askToFirst  int64
	inter       []int64 // ns per later token
	frames      int64
	deltaFrames int64
	tokens      int64
	reordered   int64
	indexErrors int64
	foreign     int64
	ended       string // END, ERROR, CANCELLED, or "" if it never ended
	endAt       int64  // when END arrived
	lastFrame   int64
	err         error

	// Of an agent run (--agent-steps): TOOL_RESULT events, those that were
	// the tool's failure, the tools' own time they report, and STEP
	// events.
	toolResults int64
	toolErrors  int64
	toolNanos   int64
	stepEvents  int64
}

// loadResult is everything a run measured, before it is summarised.
type loadResult struct {
	subs      []*subscriberState
	streams   []*stream // one per session
	askErrors int64
	firstAsk  int64
	lastFrame int64
	cpu       procDelta
	errs      []string
}

// runLoad connects every subscriber, then asks on the fixed schedule and
// records every frame until each subscriber has its END or the grace ends.
func runLoad(ctx context.Context, plan loadPlan, t loadTarget, llm *fakeLLM, probe prober) (*loadResult, error) {
	res := &loadResult{}
	type session struct {
		name, request string
		stream        *stream
		ask           atomic.Int64
	}
	sessions := make([]*session, plan.Sessions)
	for i := range sessions {
		sessions[i] = &session{
			name:    fmt.Sprintf("bench-%s-%s-%d", plan.RunID, t.name, i),
			request: fmt.Sprintf("bench-%s-%s-%d", plan.RunID, t.name, i),
			stream:  llm.streams.add(plan.Script.Tokens, plan.Script.AgentSteps),
		}
		res.streams = append(res.streams, sessions[i].stream)
	}

	// Every subscriber is attached before the first ask: the schedule measures
	// delivery, not connection setup.
	res.subs = make([]*subscriberState, plan.Sessions*plan.Subscribers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range res.subs {
		s := sessions[i/plan.Subscribers]
		g.Go(func() error {
			sctx, cancel := context.WithTimeout(gctx, 30*time.Second)
			defer cancel()
			sub, err := t.dialect.Subscribe(sctx, s.name)
			if err != nil {
				return fmt.Errorf("subscriber %d of %s: %w", i%plan.Subscribers, s.name, err)
			}
			res.subs[i] = &subscriberState{sub: sub, stream: s.stream, ask: &s.ask, want: s.request,
				counts: make([]uint8, plan.Script.Tokens), ttft: -1, inter: make([]int64, 0, plan.Script.Tokens)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		for _, s := range res.subs {
			if s != nil {
				s.sub.Close()
			}
		}
		return nil, err
	}

	clk := llm.clock
	var readers sync.WaitGroup
	for _, s := range res.subs {
		readers.Go(func() { s.read(clk) })
	}

	before := probe()
	res.firstAsk = clk.now()
	begin := time.Now()
	var asks sync.WaitGroup
	var errMu sync.Mutex
	timer := time.NewTimer(0)
	<-timer.C
	for i, s := range sessions {
		if wait := time.Until(begin.Add(time.Duration(i) * plan.Gap)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		// Each ask in its own goroutine: a slow answer to one never delays
		// the next arrival (open loop).
		asks.Go(func() {
			s.ask.Store(clk.now())
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := t.asker.ask(actx, s.name, s.request, question(s.stream.id)); err != nil {
				atomic.AddInt64(&res.askErrors, 1)
				errMu.Lock()
				if len(res.errs) < 5 {
					res.errs = append(res.errs, err.Error())
				}
				errMu.Unlock()
			}
		})
	}

	// Wait for every END, or until the last answer should long be over.
	answer := plan.Script.modelTime() + plan.Script.interval()
	deadline := begin.Add(time.Duration(len(sessions))*plan.Gap + answer + plan.Grace)
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
	}
	res.cpu = probe().since(before)
	for _, s := range res.subs {
		s.sub.Close()
	}
	<-done
	asks.Wait()
	for _, s := range res.subs {
		res.lastFrame = max(res.lastFrame, s.lastFrame)
		if s.err != nil && s.ended == "" && len(res.errs) < 5 {
			res.errs = append(res.errs, s.err.Error())
		}
	}
	return res, ctx.Err()
}

// read consumes frames until the answer ends or the connection does.
func (s *subscriberState) read(clk clock) {
	next := 0 // the event index expected next
	lastSeq := -1
	for s.ended == "" {
		evs, err := s.sub.Next()
		at := clk.now()
		if err != nil {
			s.err = err
			return
		}
		for _, ev := range evs {
			if ev.RequestID != s.want {
				s.foreign++
				continue
			}
			s.frames++
			s.lastFrame = at
			switch {
			case ev.Index == nil || *ev.Index > next:
				s.indexErrors++ // a gap
			case *ev.Index < next:
				s.indexErrors++ // a repeat: its tokens count as duplicated
			}
			if ev.Index != nil && *ev.Index >= next {
				next = *ev.Index + 1
			}
			switch ev.Type {
			case "DELTA":
				s.deltaFrames++
				parseTokens(ev.Message, func(id, seq int) {
					if id != s.stream.id || seq < 0 || seq >= len(s.counts) {
						s.foreign++
						return
					}
					if s.counts[seq] < 255 {
						s.counts[seq]++
					}
					if s.counts[seq] > 1 {
						return
					}
					s.tokens++
					if seq < lastSeq {
						s.reordered++
					}
					lastSeq = seq
					latency := max(at-s.stream.emitted[seq].Load(), 0)
					if seq == 0 {
						s.ttft = latency
						s.askToFirst = max(at-s.ask.Load(), 0)
						return
					}
					s.inter = append(s.inter, latency)
				})
			case "TOOL_RESULT":
				s.toolResults++
				r := ev.ToolResult
				if r == nil || r.IsError {
					s.toolErrors++ // the tool failed, or the event says nothing of it
				}
				if r != nil {
					s.toolNanos += int64(r.DurationMs * 1e6)
					s.stream.toolResult(r.CallID, r.DurationMs)
				}
			case "STEP":
				s.stepEvents++
			case "END":
				s.ended, s.endAt = ev.Type, at
			case "ERROR", "CANCELLED":
				s.ended = ev.Type
			}
		}
	}
}

// lostAndDuplicated counts tokens that never arrived and extra copies.
func (s *subscriberState) lostAndDuplicated() (lost, dup int64) {
	for _, c := range s.counts {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dup += int64(c - 1)
		}
	}
	return lost, dup
}

func runID() string { return strconv.FormatInt(time.Now().UnixNano()%1e9, 36) }
