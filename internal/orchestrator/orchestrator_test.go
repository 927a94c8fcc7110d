package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/chat"
)

// The worker's rules, each played against an in-memory queue and a scripted
// provider (fakes_test.go): what a subscriber is shown of an answer, what the
// conversation keeps of it, and how its delivery is settled.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	throttled   = &chat.Error{Code: chat.CodeThrottled, Message: "slow down"}
	unavailable = &chat.Error{Code: chat.CodeProviderUnavailable, Message: "try later"}
)

var requestSeq atomic.Int64

// newRequest is a question no other test asks.
func newRequest(model string) chat.Request {
	n := strconv.FormatInt(requestSeq.Add(1), 10)
	return chat.Request{ID: "r" + n, SessionID: "s" + n, Message: "hello?", Locale: "en", Model: model}
}

// testConfig answers one request at a time, retries without waiting, and
// gives a provider all the time a test may take.
func testConfig() Config {
	return Config{
		Workers:   1,
		Heartbeat: time.Minute,
		Policy:    Policy{FirstToken: time.Minute, Idle: time.Minute, Backoff: time.Nanosecond},
	}
}

// testWorker is a worker pool running on a fakeQueue.
type testWorker struct {
	stopPulling, stopWorking context.CancelFunc
	done                     chan error
	once                     sync.Once
	err                      error
}

// startWorker runs a worker pool on q until the test ends.
func startWorker(t *testing.T, q *fakeQueue, cfg Config, models map[string]Model) *testWorker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := New(cfg, q, models, log)
	pull, stopPulling := context.WithCancel(context.Background())
	work, stopWorking := context.WithCancel(context.Background())
	w := &testWorker{stopPulling: stopPulling, stopWorking: stopWorking, done: make(chan error, 1)}
	go func() { w.done <- o.Run(pull, work) }()
	t.Cleanup(func() {
		if err := w.shutdown(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	q.waitFor(t, "the worker to watch cancels and exhausted requests", func() bool {
		return q.onCancel != nil && q.onExhausted != nil
	})
	return w
}

// drain stops the pool taking requests and returns once the answers in
// flight have ended by themselves.
func (w *testWorker) drain() error {
	w.stopPulling()
	return w.wait()
}

// shutdown stops the pool and the answers in flight, as a server stopping
// does, and returns once they are handed back.
func (w *testWorker) shutdown() error {
	w.stopPulling()
	w.stopWorking()
	return w.wait()
}

func (w *testWorker) wait() error {
	w.once.Do(func() { w.err = <-w.done })
	return w.err
}

// models names each provider "fake:<name>".
func models(providers map[string]*fakeProvider, fallbacks map[string][]string) map[string]Model {
	out := make(map[string]Model)
	for name, p := range providers {
		out[name] = Model{Ref: "fake:" + name, Provider: p, ID: name, Fallbacks: fallbacks[name]}
	}
	return out
}

// await returns what ch yields. It fails the test if that takes longer than
// any answer here may (a hung worker).
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// ended waits until d is acked or released, and returns the request's
// history.
func ended(t *testing.T, q *fakeQueue, d *fakeDelivery) []chat.Event {
	t.Helper()
	q.waitFor(t, "the request to be settled", d.settled)
	return q.stored(d.req.ID)
}

// shown sums up events as a subscriber reads them: the type, with a DELTA's
// text, a MESSAGE's text or an ERROR's code.
func shown(evs []chat.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		s := string(ev.Type)
		switch ev.Type {
		case chat.EventDelta, chat.EventMessage:
			s += " " + ev.Message
		case chat.EventError:
			if ev.Error != nil {
				s += " " + ev.Error.Code
			}
		}
		out = append(out, s)
	}
	return out
}

func apology() string { return "DELTA " + chat.ErrorText("en") }

// checkAnswer fails t unless evs (one attempt's events, from its START)
// are numbered from 0 without a gap and point at their START.
func checkAnswer(t *testing.T, evs []chat.Event) {
	t.Helper()
	i := slices.IndexFunc(evs, func(ev chat.Event) bool { return ev.Type == chat.EventStart })
	if i < 0 {
		t.Fatalf("no START in %q", shown(evs))
	}
	for n, ev := range evs[i:] {
		if ev.Index != n {
			t.Errorf("%s is event %d of the answer, index %d", ev.Type, n, ev.Index)
		}
		if n > 0 && ev.StartSeq != evs[i].Seq {
			t.Errorf("%s points at START %d, not %d", ev.Type, ev.StartSeq, evs[i].Seq)
		}
	}
}

// checkTurn fails t unless the conversation keeps the answer to req as
// status and text.
func checkTurn(t *testing.T, q *fakeQueue, req chat.Request, status chat.TurnStatus, text string) {
	t.Helper()
	turn, ok := q.turn(req.SessionID, req.ID)
	if !ok {
		t.Fatal("the conversation has no answer")
	}
	if turn.Status != status || turn.Text != text {
		t.Errorf("the conversation keeps %s %q, want %s %q", turn.Status, turn.Text, status, text)
	}
}

// checkSettled fails t unless d was acked and released as many times.
func checkSettled(t *testing.T, d *fakeDelivery, acked, released int) {
	t.Helper()
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if d.acked != acked || d.released != released {
		t.Errorf("delivery acked %d and released %d times, want %d and %d", d.acked, d.released, acked, released)
	}
}

func TestWorkerAnswers(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	p := script(answers("Hel", "lo"))
	startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": p}, nil))
	req := newRequest("m")
	d := q.deliver(req, 1)

	evs := ended(t, q, d)
	if got, want := shown(evs), []string{"START", "DELTA Hel", "DELTA lo", "END"}; !slices.Equal(got, want) {
		t.Fatalf("subscribers saw %q, want %q", got, want)
	}
	checkAnswer(t, evs)
	end := evs[len(evs)-1]
	if end.Model != "fake:m" || end.Usage == nil || end.Usage.OutputTokens != 2 || end.StopReason != "end_turn" {
		t.Errorf("END says model %q, usage %+v, stop %q", end.Model, end.Usage, end.StopReason)
	}
	checkTurn(t, q, req, chat.StatusComplete, "Hello")
	checkSettled(t, d, 1, 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	if got := p.prompts[0].Messages; len(got) != 1 || got[0].Text != req.Message {
		t.Errorf("the provider was asked %+v", got)
	}
}

// A request delivered again after its end was committed (the ack was lost)
// is not answered again: its end is published again, a no-op, and the
// request acked.
func TestWorkerRedeliveryOfAnEndedRequest(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	p := script(answers("once"), answers("twice"))
	startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": p}, nil))
	req := newRequest("m")
	ended(t, q, q.deliver(req, 1))
	again := q.deliver(req, 2)

	evs := ended(t, q, again)
	if got, want := shown(evs), []string{"START", "DELTA once", "END"}; !slices.Equal(got, want) {
		t.Errorf("subscribers saw %q, want %q", got, want)
	}
	if got := p.called(); got != 1 {
		t.Errorf("the provider was called %d times, want once", got)
	}
	checkTurn(t, q, req, chat.StatusComplete, "once")
	checkSettled(t, again, 1, 0)
}

// Before the first token a provider that asked us to slow down or could
// not serve is asked again; after it, never: the user has seen part of an
// answer, and a second call would bill and show a different one.
func TestWorkerRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		provider  *fakeProvider
		wantCalls int
		want      []string
		status    chat.TurnStatus
		text      string
	}{
		{
			name:      "before the first token",
			provider:  script(fails(throttled), fails(unavailable), answers("ok")),
			wantCalls: 3,
			want:      []string{"START", "DELTA ok", "END"},
			status:    chat.StatusComplete, text: "ok",
		},
		{
			name:      "until the retries run out",
			provider:  script(fails(throttled)),
			wantCalls: 3,
			want:      []string{"START", apology(), "ERROR PROVIDER_THROTTLED"},
			status:    chat.StatusError,
		},
		{
			name:      "not after the first token",
			provider:  script(fails(throttled, "Hel"), answers("never")),
			wantCalls: 1,
			want:      []string{"START", "DELTA Hel", "MESSAGE " + chat.MarkerStart, apology(), "ERROR PROVIDER_THROTTLED"},
			status:    chat.StatusIncomplete, text: "Hel",
		},
		{
			name:      "not a failure of the request",
			provider:  script(fails(&chat.Error{Code: chat.CodeProvider, Message: "bad prompt"}), answers("never")),
			wantCalls: 1,
			want:      []string{"START", apology(), "ERROR PROVIDER_ERROR"},
			status:    chat.StatusError,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			cfg := testConfig()
			cfg.Policy.Retries = 2
			startWorker(t, q, cfg, models(map[string]*fakeProvider{"m": tc.provider}, nil))
			req := newRequest("m")
			d := q.deliver(req, 1)

			evs := ended(t, q, d)
			if got := shown(evs); !slices.Equal(got, tc.want) {
				t.Errorf("subscribers saw %q, want %q", got, tc.want)
			}
			checkAnswer(t, evs)
			if got := tc.provider.called(); got != tc.wantCalls {
				t.Errorf("the provider was called %d times, want %d", got, tc.wantCalls)
			}
			checkTurn(t, q, req, tc.status, tc.text)
			checkSettled(t, d, 1, 0)
		})
	}
}

// A model that fails before its first token for a reason of its own hands
// the answer to its fallbacks, in order; the END names the model that
// answered.
func TestWorkerFallsBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		first         *fakeProvider
		wantFallbacks int // calls of the fallback model
		want          []string
		wantModel     string
		status        chat.TurnStatus
		text          string
	}{
		{
			name:          "when the model is unavailable",
			first:         script(fails(unavailable)),
			wantFallbacks: 1,
			want:          []string{"START", "DELTA from b", "END"},
			wantModel:     "fake:b",
			status:        chat.StatusComplete, text: "from b",
		},
		{
			name:          "when the model refuses our credentials",
			first:         script(fails(&chat.Error{Code: chat.CodeProviderAuth, Message: "who?"})),
			wantFallbacks: 1,
			want:          []string{"START", "DELTA from b", "END"},
			wantModel:     "fake:b",
			status:        chat.StatusComplete, text: "from b",
		},
		{
			name:      "not after the first token",
			first:     script(fails(unavailable, "from a")),
			want:      []string{"START", "DELTA from a", "MESSAGE " + chat.MarkerStart, apology(), "ERROR PROVIDER_UNAVAILABLE"},
			wantModel: "fake:a",
			status:    chat.StatusIncomplete, text: "from a",
		},
		{
			name:      "not when the request is at fault",
			first:     script(fails(&chat.Error{Code: chat.CodeProvider, Message: "bad prompt"})),
			want:      []string{"START", apology(), "ERROR PROVIDER_ERROR"},
			wantModel: "fake:a",
			status:    chat.StatusError,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			b := script(answers("from b"))
			startWorker(t, q, testConfig(), models(
				map[string]*fakeProvider{"a": tc.first, "b": b},
				map[string][]string{"a": {"not-configured", "b"}},
			))
			req := newRequest("a")
			d := q.deliver(req, 1)

			evs := ended(t, q, d)
			if got := shown(evs); !slices.Equal(got, tc.want) {
				t.Errorf("subscribers saw %q, want %q", got, tc.want)
			}
			checkAnswer(t, evs)
			if last := evs[len(evs)-1]; last.Model != tc.wantModel {
				t.Errorf("%s names model %q, want %q", last.Type, last.Model, tc.wantModel)
			}
			if got := tc.first.called(); got != 1 {
				t.Errorf("the first model was called %d times, want once", got)
			}
			if got := b.called(); got != tc.wantFallbacks {
				t.Errorf("the fallback was called %d times, want %d", got, tc.wantFallbacks)
			}
			checkTurn(t, q, req, tc.status, tc.text)
			checkSettled(t, d, 1, 0)
		})
	}
}

// A model that keeps us waiting, for its first token or between two, is
// stopped and the answer ends with PROVIDER_TIMEOUT; a timed-out model is
// not asked again.
func TestWorkerTimeouts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		policy  func(*Policy)
		chunks  []string
		cause   error // why the provider's call is stopped
		message string
		want    []string
		status  chat.TurnStatus
		text    string
	}{
		{
			name:    "no first token in time",
			policy:  func(p *Policy) { p.FirstToken = 5 * time.Millisecond },
			cause:   errFirstTokenTimeout,
			message: "the model did not start answering in time",
			want:    []string{"START", apology(), "ERROR PROVIDER_TIMEOUT"},
			status:  chat.StatusError,
		},
		{
			name:    "silent mid-answer",
			policy:  func(p *Policy) { p.Idle = 5 * time.Millisecond },
			chunks:  []string{"Hel"},
			cause:   errIdleTimeout,
			message: "the model stopped answering mid-way",
			want:    []string{"START", "DELTA Hel", "MESSAGE " + chat.MarkerStart, apology(), "ERROR PROVIDER_TIMEOUT"},
			status:  chat.StatusIncomplete, text: "Hel",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			cfg := testConfig()
			cfg.Policy.Retries = 2
			tc.policy(&cfg.Policy)
			stopped := make(chan error, 1)
			p := script(hangs(nil, stopped, tc.chunks...))
			startWorker(t, q, cfg, models(map[string]*fakeProvider{"m": p}, nil))
			req := newRequest("m")
			d := q.deliver(req, 1)

			evs := ended(t, q, d)
			if got := shown(evs); !slices.Equal(got, tc.want) {
				t.Fatalf("subscribers saw %q, want %q", got, tc.want)
			}
			checkAnswer(t, evs)
			if msg := evs[len(evs)-1].Error.Message; msg != tc.message {
				t.Errorf("ERROR says %q, want %q", msg, tc.message)
			}
			if err := await(t, "the provider's call to stop", stopped); !errors.Is(err, tc.cause) {
				t.Errorf("the provider's call was stopped by %v, want %v", err, tc.cause)
			}
			if got := p.called(); got != 1 {
				t.Errorf("the provider was called %d times, want once", got)
			}
			checkTurn(t, q, req, tc.status, tc.text)
			checkSettled(t, d, 1, 0)
		})
	}
}

// A user's cancel stops the provider's call itself, and the answer ends
// CANCELLED with what was shown kept.
func TestWorkerCancel(t *testing.T) {
	t.Parallel()
	t.Run("reaches the provider", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		emitted, stopped := make(chan struct{}), make(chan error, 1)
		p := script(hangs(emitted, stopped, "Hel"))
		startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": p}, nil))
		req := newRequest("m")
		d := q.deliver(req, 1)
		await(t, "the provider to emit", emitted)
		q.cancel(req.SessionID, req.ID)

		if err := await(t, "the provider's call to stop", stopped); !errors.Is(err, errCancelled) {
			t.Errorf("the provider's call was stopped by %v, want the user's cancel", err)
		}
		evs := ended(t, q, d)
		if got, want := shown(evs), []string{"START", "DELTA Hel", "CANCELLED"}; !slices.Equal(got, want) {
			t.Errorf("subscribers saw %q, want %q", got, want)
		}
		checkAnswer(t, evs)
		checkTurn(t, q, req, chat.StatusCancelled, "Hel")
		checkSettled(t, d, 1, 0)
	})
	t.Run("before the worker took the request", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		p := script(answers("never"))
		startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": p}, nil))
		req := newRequest("m")
		q.cancel(req.SessionID, req.ID)
		d := q.deliver(req, 1)

		evs := ended(t, q, d)
		if got, want := shown(evs), []string{"START", "CANCELLED"}; !slices.Equal(got, want) {
			t.Errorf("subscribers saw %q, want %q", got, want)
		}
		if got := p.called(); got != 0 {
			t.Errorf("the provider was called %d times, want never", got)
		}
		checkTurn(t, q, req, chat.StatusCancelled, "")
		checkSettled(t, d, 1, 0)
	})
}

// An attempt whose request a newer attempt has claimed stops without
// publishing its end, and neither acks nor releases the request: the newer
// attempt ends it.
func TestWorkerSupersededAttemptStops(t *testing.T) {
	t.Parallel()
	t.Run("when it sees the newer claim", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		emitted, stopped := make(chan struct{}), make(chan error, 1)
		p := script(hangs(emitted, stopped, "old"), answers("new"))
		cfg := testConfig()
		cfg.Workers = 2
		w := startWorker(t, q, cfg, models(map[string]*fakeProvider{"m": p}, nil))
		req := newRequest("m")
		first := q.deliver(req, 1)
		await(t, "the provider to emit", emitted)
		// Emitting hands the event over; the store takes it a moment later.
		q.waitFor(t, "old to be stored", func() bool { return hasEvent(q.storedLocked(req.ID), chat.EventDelta) })
		second := q.deliver(req, 2)

		if err := await(t, "the provider's call to stop", stopped); !errors.Is(err, chat.ErrSuperseded) {
			t.Errorf("the old attempt's call was stopped by %v, want the newer claim", err)
		}
		ended(t, q, second)
		if err := w.drain(); err != nil {
			t.Fatal(err)
		}
		evs := q.stored(req.ID)
		want := []string{"START", "DELTA old", "RESTART", "START", "DELTA new", "END"}
		if got := shown(evs); !slices.Equal(got, want) {
			t.Fatalf("subscribers saw %q, want %q", got, want)
		}
		for _, ev := range evs[:2] {
			if ev.Attempt != 1 {
				t.Errorf("%s of the old attempt says attempt %d", ev.Type, ev.Attempt)
			}
		}
		checkAnswer(t, evs[3:])
		if end := evs[len(evs)-1]; end.Attempt != 2 {
			t.Errorf("END says attempt %d, want 2", end.Attempt)
		}
		checkTurn(t, q, req, chat.StatusComplete, "new")
		checkSettled(t, first, 0, 0)
		checkSettled(t, second, 1, 0)
	})
	t.Run("when its commit loses", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		q.quietClaims = true
		emitted, resume := make(chan struct{}), make(chan struct{})
		p := script(pauses(emitted, resume, "old ", "answer"))
		w := startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": p}, nil))
		req := newRequest("m")
		d := q.deliver(req, 1)
		await(t, "the provider to emit", emitted)
		// Another worker, given the request again, claims it.
		if _, err := q.ClaimAttempt(context.Background(), req.SessionID, req.ID, 2); err != nil {
			t.Fatal(err)
		}
		close(resume)
		if err := w.drain(); err != nil {
			t.Fatal(err)
		}

		if got, want := shown(q.stored(req.ID)), []string{"START", "DELTA old ", "DELTA answer"}; !slices.Equal(got, want) {
			t.Errorf("subscribers saw %q, want %q", got, want)
		}
		checkSettled(t, d, 0, 0)
	})
}

// The rules of coalescing, as subscribers see them: the first delta alone,
// the rest by window, size or count; the conversation keeps the text whole.
func TestWorkerCoalescesDeltas(t *testing.T) {
	t.Parallel()
	chunks := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var withEmpty []string
	for _, c := range chunks {
		withEmpty = append(withEmpty, "", c)
	}
	cases := []struct {
		name   string
		co     Coalescing
		chunks []string // what the provider emits
		want   []string
	}{
		{"every chunk", Coalescing{}, chunks, chunks},
		{"by count", Coalescing{Window: time.Hour, Chunks: 3}, chunks, []string{"a", "bcd", "efg", "h"}},
		{"by size", Coalescing{Window: time.Hour, Bytes: 4}, chunks, []string{"a", "bcde", "fgh"}},
		{"the rest at the end", Coalescing{Window: time.Hour}, chunks, []string{"a", "bcdefgh"}},
		{"empty chunks count for nothing", Coalescing{Window: time.Hour, Chunks: 2}, withEmpty, []string{"a", "bc", "de", "fg", "h"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			cfg := testConfig()
			cfg.Coalescing = tc.co
			startWorker(t, q, cfg, models(map[string]*fakeProvider{"m": script(answers(tc.chunks...))}, nil))
			req := newRequest("m")
			d := q.deliver(req, 1)

			evs := ended(t, q, d)
			var deltas []string
			for _, ev := range evs {
				if ev.Type == chat.EventDelta {
					deltas = append(deltas, ev.Message)
				}
			}
			if !slices.Equal(deltas, tc.want) {
				t.Errorf("deltas %q, want %q", deltas, tc.want)
			}
			checkAnswer(t, evs)
			checkTurn(t, q, req, chat.StatusComplete, "abcdefgh")
		})
	}
}

// When the store has no space left mid-answer, subscribers are told at
// once, by events announced without being stored; the worker keeps the
// request and stores the same end once the store takes writes again.
func TestWorkerStorageFull(t *testing.T) {
	t.Parallel()
	wantEnd := []string{"MESSAGE " + chat.MarkerStart, apology(), "ERROR STORAGE_UNAVAILABLE"}
	// fill answers "Hel", fills the store, then emits "lo", which cannot be
	// stored; it returns once the end of the answer is announced.
	fill := func(t *testing.T, q *fakeQueue, cfg Config) (*testWorker, chat.Request, *fakeDelivery, *fakeRecorder) {
		emitted, resume := make(chan struct{}), make(chan struct{})
		rec := &fakeRecorder{}
		cfg.Recorder = rec
		w := startWorker(t, q, cfg, models(map[string]*fakeProvider{"m": script(pauses(emitted, resume, "Hel", "lo"))}, nil))
		req := newRequest("m")
		d := q.deliver(req, 1)
		await(t, "the provider to emit", emitted)
		// Emitting hands the event over; the store takes it a moment later.
		q.waitFor(t, "Hel to be stored", func() bool { return hasEvent(q.storedLocked(req.ID), chat.EventDelta) })
		q.setFull(true)
		close(resume)
		q.waitFor(t, "the end to be announced", func() bool { return hasEvent(q.announced, chat.EventError) })

		q.mu.Lock()
		announced, stored := slices.Clone(q.announced), q.storedLocked(req.ID)
		q.mu.Unlock()
		if got := shown(announced); !slices.Equal(got, wantEnd) {
			t.Errorf("announced %q, want %q", got, wantEnd)
		}
		for i, ev := range announced {
			if ev.Index != 2+i || ev.StartSeq != stored[0].Seq || ev.Attempt != 1 {
				t.Errorf("announced %s has index %d, start %d, attempt %d", ev.Type, ev.Index, ev.StartSeq, ev.Attempt)
			}
		}
		if hasEvent(stored, chat.EventError) {
			t.Error("an end was stored while the store was full")
		}
		return w, req, d, rec
	}

	t.Run("the end is stored once there is space", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		cfg := testConfig()
		cfg.Heartbeat = time.Millisecond // how often the end is tried again
		_, req, d, rec := fill(t, q, cfg)
		q.mu.Lock()
		refused := q.refused
		q.mu.Unlock()
		q.waitFor(t, "another try at storing the end", func() bool { return q.refused > refused })
		checkSettled(t, d, 0, 0)
		q.setFull(false)

		evs := ended(t, q, d)
		want := append([]string{"START", "DELTA Hel"}, wantEnd...)
		if got := shown(evs); !slices.Equal(got, want) {
			t.Errorf("stored %q, want %q", got, want)
		}
		checkAnswer(t, evs)
		checkTurn(t, q, req, chat.StatusIncomplete, "Hello")
		checkSettled(t, d, 1, 0)
		if got, want := rec.outcomes(), []string{"ERROR:STORAGE_UNAVAILABLE"}; !slices.Equal(got, want) {
			t.Errorf("recorded %q, want %q", got, want)
		}
	})
	t.Run("a shutdown hands the request back", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		cfg := testConfig()
		cfg.Heartbeat = time.Hour
		w, req, d, _ := fill(t, q, cfg)
		if err := w.shutdown(); err != nil {
			t.Fatal(err)
		}
		checkSettled(t, d, 0, 1)
		if hasEvent(q.stored(req.ID), chat.EventError) {
			t.Error("an end was stored while the store was full")
		}
	})
}

// A request whose deliveries ran out ends visibly: ERROR INTERNAL for its
// subscribers and the conversation, a dead letter for the operator.
func TestWorkerExhaustedRequest(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	startWorker(t, q, testConfig(), models(map[string]*fakeProvider{"m": script(answers("never"))}, nil))
	req := newRequest("m")
	if err := q.exhaust(req, 5); err != nil {
		t.Fatal(err)
	}
	evs := q.stored(req.ID)
	want := []string{"RESTART", "START", apology(), "ERROR INTERNAL"}
	if got := shown(evs); !slices.Equal(got, want) {
		t.Fatalf("subscribers saw %q, want %q", got, want)
	}
	checkAnswer(t, evs[1:])
	if got := evs[len(evs)-1].Attempt; got != 6 {
		t.Errorf("the end is attempt %d, want 6 (after 5 deliveries)", got)
	}
	checkTurn(t, q, req, chat.StatusError, "")
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.deadLetters) != 1 || q.deadLetters[0].Request.ID != req.ID || q.deadLetters[0].Deliveries != 5 {
		t.Errorf("dead letters %+v", q.deadLetters)
	}
}
