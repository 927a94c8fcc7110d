package hub

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// memory is an in-memory event history with the bus's contract.
type memory struct {
	mu       sync.Mutex
	events   []chat.Event         // events[i].Seq == i+1
	turns    map[string]chat.Turn // the latest per session
	watchers map[string]func(chat.Event)
}

func (m *memory) LatestTurn(ctx context.Context, session string) (*chat.Turn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.turns[session]
	if !ok {
		return nil, nil
	}
	return &t, nil
}

func newMemory() *memory {
	return &memory{watchers: map[string]func(chat.Event){}, turns: map[string]chat.Turn{}}
}

func (m *memory) publish(ev chat.Event) {
	m.mu.Lock()
	ev.Seq = uint64(len(m.events) + 1)
	m.events = append(m.events, ev)
	w := m.watchers[ev.SessionID]
	m.mu.Unlock()
	if w != nil {
		w(ev)
	}
}

func (m *memory) Watch(ctx context.Context, session string, fn func(chat.Event)) (func(), uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watchers[session] = fn
	return func() {
		m.mu.Lock()
		delete(m.watchers, session)
		m.mu.Unlock()
	}, uint64(len(m.events)), nil
}

func (m *memory) LastEvent(ctx context.Context, session string) (*chat.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.events) - 1; i >= 0; i-- {
		if m.events[i].SessionID == session {
			ev := m.events[i]
			return &ev, nil
		}
	}
	return nil, nil
}

func (m *memory) ReplayEvents(ctx context.Context, session string, from, to uint64, fn func(chat.Event) error) error {
	m.mu.Lock()
	evs := append([]chat.Event(nil), m.events...)
	m.mu.Unlock()
	for _, ev := range evs {
		if ev.Seq >= from && ev.Seq <= to && ev.SessionID == session {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memory) History(ctx context.Context) (uint64, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return 1, uint64(len(m.events)), nil
}

// sink collects what a subscriber receives.
type sink struct {
	ch chan *Shared
}

func (s *sink) Deliver(sh *Shared) bool {
	select {
	case s.ch <- sh:
		return true
	default:
		return false
	}
}

func (s *sink) Replay(ctx context.Context, sh *Shared) error {
	s.ch <- sh
	return nil
}

func quietHub(src Source) *Hub {
	return New(src, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{MaxPending: 64})
}

func TestLateSubscriberGetsTheAnswerInFlightFromStart(t *testing.T) {
	m := newMemory()
	h := quietHub(m)
	defer h.Close()
	early := &sink{ch: make(chan *Shared, 100)}
	if _, err := h.Subscribe(context.Background(), "s", nil, early); err != nil {
		t.Fatal(err)
	}
	m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r"})
	m.publish(chat.Event{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Index: 1, Message: "a", StartSeq: 1})
	m.publish(chat.Event{Type: chat.EventDelta, SessionID: "other", RequestID: "x"})
	late := &sink{ch: make(chan *Shared, 100)}
	if _, err := h.Subscribe(context.Background(), "s", nil, late); err != nil {
		t.Fatal(err)
	}
	m.publish(chat.Event{Type: chat.EventEnd, SessionID: "s", RequestID: "r", Index: 2, StartSeq: 1})
	for name, s := range map[string]*sink{"early": early, "late": late} {
		var got []chat.EventType
		for len(got) < 3 {
			select {
			case sh := <-s.ch:
				got = append(got, sh.Event.Type)
			case <-time.After(time.Second):
				t.Fatalf("%s subscriber got %v", name, got)
			}
		}
		if got[0] != chat.EventStart || got[1] != chat.EventDelta || got[2] != chat.EventEnd || len(s.ch) != 0 {
			t.Fatalf("%s subscriber got %v", name, got)
		}
	}
	if h.Sessions() != 1 || h.Subscribers() != 2 {
		t.Fatalf("%d sessions, %d subscribers", h.Sessions(), h.Subscribers())
	}
}

// An answer that ended just before a subscription without a cursor started
// is replayed to it whole, once, after the grace; an older one, one the
// subscriber passed a cursor beyond, or one followed by a newer question or
// a live event within the grace (the subscriber came for the next answer)
// is not.
func TestLateJoinWindowReplaysAnAnswerThatJustEnded(t *testing.T) {
	ended := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cursor := uint64(5)
	for _, tc := range []struct {
		name     string
		since    time.Duration // from the end to the subscription
		after    *uint64
		followUp func(m *memory) // during the grace
		want     []chat.EventType
	}{
		{"within the window", 9 * time.Second, nil, nil, []chat.EventType{chat.EventStart, chat.EventDelta, chat.EventError}},
		{"past the window", 11 * time.Second, nil, nil, nil},
		{"a cursor at its end", time.Second, &cursor, nil, nil},
		{"a newer question is asked", time.Second, nil, func(m *memory) {
			m.mu.Lock()
			m.turns["s"] = chat.Turn{RequestID: "r2", Role: chat.RoleUser}
			m.mu.Unlock()
		}, nil},
		{"the next answer starts", time.Second, nil, func(m *memory) {
			m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r2"})
		}, []chat.EventType{chat.EventStart}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemory()
			m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "old"})
			m.publish(chat.Event{Type: chat.EventEnd, SessionID: "s", RequestID: "old", Index: 1, StartSeq: 1, TimeStamp: ended.Add(-time.Minute)})
			m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r"})
			m.publish(chat.Event{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Index: 1, Message: "a", StartSeq: 3})
			m.publish(chat.Event{Type: chat.EventError, SessionID: "s", RequestID: "r", Index: 2, StartSeq: 3, TimeStamp: ended})
			m.turns["s"] = chat.Turn{RequestID: "r", Role: chat.RoleAssistant}

			h := New(m, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{MaxPending: 64, LateJoinWindow: 10 * time.Second, LateJoinGrace: time.Hour})
			defer h.Close()
			h.now = func() time.Time { return ended.Add(tc.since) }
			s := &sink{ch: make(chan *Shared, 100)}
			sub, err := h.Subscribe(context.Background(), "s", tc.after, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.ch) != 0 {
				t.Fatalf("replayed at once, before the grace: %v", (<-s.ch).Event)
			}
			if tc.followUp != nil {
				tc.followUp(m)
			}
			sub.sess.mu.Lock()
			if sub.late != nil {
				sub.late.Reset(0) // the grace is over
			}
			sub.sess.mu.Unlock()
			h.wg.Wait()
			var got []chat.EventType
			for len(s.ch) > 0 {
				got = append(got, (<-s.ch).Event.Type)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEncodedOncePerShape(t *testing.T) {
	sh := &Shared{Event: chat.Event{Message: "x"}}
	calls := 0
	enc := func(ev *chat.Event) []byte { calls++; return []byte(ev.Message) }
	a, b := new(int), new(int)
	for range 3 {
		sh.Encoded(a, enc)
		sh.Encoded(b, enc)
	}
	if calls != 2 {
		t.Fatalf("encoded %d times for 2 shapes", calls)
	}
}

// BenchmarkFanOut measures delivering one event to 100 subscribers of a
// session, encoded once for their shared shape.
func BenchmarkFanOut(b *testing.B) {
	m := newMemory()
	h := quietHub(m)
	defer h.Close()
	const subscribers = 100
	shape := new(int)
	enc := func(ev *chat.Event) []byte { return []byte(`{"onSendMessage":{"message":"` + ev.Message + `"}}`) }
	var sinks []*encodingSink
	for range subscribers {
		s := &encodingSink{shape: shape, enc: enc}
		sinks = append(sinks, s)
		if _, err := h.Subscribe(context.Background(), "s", nil, s); err != nil {
			b.Fatal(err)
		}
	}
	ev := chat.Event{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Message: "token "}
	b.ReportAllocs()
	for b.Loop() {
		m.publish(ev)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/delivery")
	if sinks[0].n != sinks[subscribers-1].n || sinks[0].n == 0 {
		b.Fatalf("deliveries %d and %d", sinks[0].n, sinks[subscribers-1].n)
	}
}

type encodingSink struct {
	shape *int
	enc   func(*chat.Event) []byte
	n     int
}

func (s *encodingSink) Deliver(sh *Shared) bool {
	_ = sh.Encoded(s.shape, s.enc)
	s.n++
	return true
}

func (s *encodingSink) Replay(ctx context.Context, sh *Shared) error { return nil }

// attachSink runs onAttach at the moment its subscription is live.
type attachSink struct {
	sink
	onAttach func()
}

func (s *attachSink) Attached() { s.onAttach() }

// TestEventsFromTheMomentOfAttachingAreDelivered: a client that publishes
// as soon as its subscription is acknowledged (AppSync's start_ack) gets
// what it published, on a session this node watches already and on one it
// starts watching; with an answer in flight it gets that answer from START
// and the delta published as it attached.
func TestEventsFromTheMomentOfAttachingAreDelivered(t *testing.T) {
	for _, tc := range []struct {
		name     string
		watched  bool // another subscriber watches the session already
		inFlight bool // an answer started before, and has not ended
	}{
		{"new watch, nothing in flight", false, false},
		{"new watch, an answer in flight", false, true},
		{"watched, nothing in flight", true, false},
		{"watched, an answer in flight", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemory()
			h := quietHub(m)
			defer h.Close()
			if tc.watched {
				if _, err := h.Subscribe(context.Background(), "s", nil, &sink{ch: make(chan *Shared, 100)}); err != nil {
					t.Fatal(err)
				}
			}
			// What is published at the moment of attaching: a message, or
			// the next delta of the answer in flight.
			now := chat.Event{Type: chat.EventMessage, SessionID: "s", Message: "right away"}
			var want []chat.EventType
			if tc.inFlight {
				m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r"})
				want = append(want, chat.EventStart)
				now = chat.Event{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Index: 1, Message: "a", StartSeq: 1}
			}
			s := &attachSink{sink: sink{ch: make(chan *Shared, 100)}}
			s.onAttach = func() { m.publish(now) }
			want = append(want, now.Type)
			if _, err := h.Subscribe(context.Background(), "s", nil, s); err != nil {
				t.Fatal(err)
			}
			var got []chat.EventType
			for len(got) < len(want) {
				select {
				case sh := <-s.ch:
					got = append(got, sh.Event.Type)
				case <-time.After(time.Second):
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			if len(s.ch) != 0 {
				t.Fatalf("got %v and more, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
		})
	}
}

// announce delivers ev to the session's watcher without storing it, as the
// bus does for an answer the store had no space for.
func (m *memory) announce(ev chat.Event) {
	m.mu.Lock()
	w := m.watchers[ev.SessionID]
	m.mu.Unlock()
	if w != nil {
		w(ev)
	}
}

// Events announced without being stored reach subscribers; their copies
// stored once there is space again are not sent a second time, while the
// answers after them are.
func TestAnnouncedEventsAreNotSentAgainWhenStored(t *testing.T) {
	m := newMemory()
	h := quietHub(m)
	defer h.Close()
	s := &sink{ch: make(chan *Shared, 100)}
	if _, err := h.Subscribe(context.Background(), "s", nil, s); err != nil {
		t.Fatal(err)
	}
	m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r"})
	m.publish(chat.Event{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Index: 1, Message: "a", StartSeq: 1})
	end := []chat.Event{
		{Type: chat.EventDelta, SessionID: "s", RequestID: "r", Index: 2, Message: "sorry", StartSeq: 1},
		{Type: chat.EventError, SessionID: "s", RequestID: "r", Index: 3, StartSeq: 1},
	}
	for _, ev := range end {
		m.announce(ev)
	}
	for _, ev := range end {
		m.publish(ev)
	}
	m.publish(chat.Event{Type: chat.EventStart, SessionID: "s", RequestID: "r2"})
	var got []string
	for len(got) < 5 {
		select {
		case sh := <-s.ch:
			got = append(got, sh.Event.RequestID+":"+string(sh.Event.Type))
		case <-time.After(time.Second):
			t.Fatalf("got %v", got)
		}
	}
	want := []string{"r:START", "r:DELTA", "r:DELTA", "r:ERROR", "r2:START"}
	if !slices.Equal(got, want) || len(s.ch) != 0 {
		t.Fatalf("got %v (and %d more), want %v", got, len(s.ch), want)
	}
}
