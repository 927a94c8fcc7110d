package stream

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/hub"
)

// fakeHub attaches every subscription at once and hands its sink to the
// test, which plays the hub: live events through Deliver, history through
// Replay.
type fakeHub struct{ sinks chan hub.Sink }

func (h *fakeHub) Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error) {
	sink.(hub.Attacher).Attached()
	h.sinks <- sink
	return nil, nil
}

func newFakeHub() *fakeHub { return &fakeHub{sinks: make(chan hub.Sink, 1)} }

// typesEncoder frames an event as its type and request, and ends at a
// terminal event.
type typesEncoder struct{}

func (typesEncoder) Event(b []byte, ev *chat.Event) ([]byte, bool) {
	return append(b, string(ev.Type)+" "+ev.RequestID+"\n"...), ev.Type.Terminal()
}

func (typesEncoder) Fail(b []byte, code, message string) []byte {
	return append(b, "FAIL "+code+"\n"...)
}

func shared(typ chat.EventType, request string) *hub.Shared {
	return &hub.Shared{Event: chat.Event{Type: typ, RequestID: request}}
}

// A follower that falls further behind than its queue is told so, and is
// never handed what came after the gap.
func TestFollowerTooSlow(t *testing.T) {
	ctx := context.Background()
	h := newFakeHub()
	f := Follow(ctx, h, "s", nil, 2)
	defer f.Close()
	if err := f.Attached(ctx); err != nil {
		t.Fatal(err)
	}
	sink := <-h.sinks
	for i, typ := range []chat.EventType{chat.EventStart, chat.EventDelta, chat.EventDelta} {
		if ok := sink.Deliver(shared(typ, "r")); ok != (i < 2) {
			t.Fatalf("delivery %d: %v", i, ok)
		}
	}
	for range 3 {
		ev, err := f.Next(ctx)
		if errors.Is(err, ErrSlow) {
			return
		}
		if err != nil || ev.Type == "" {
			t.Fatalf("%+v %v", ev, err)
		}
	}
	t.Fatal("the follower never said it was too slow")
}

// Serve writes the first frames, then the events of its answer only, and
// ends with the answer.
func TestServeOneAnswer(t *testing.T) {
	ctx := context.Background()
	h := newFakeHub()
	a := NewAnswers(AnswersConfig{}, newPolicy(Config{}), h)
	f := a.Follow(ctx, "s", nil)
	defer f.Close()
	if err := f.Attached(ctx); err != nil {
		t.Fatal(err)
	}
	sink := <-h.sinks
	for _, sh := range []*hub.Shared{shared(chat.EventStart, "other"), shared(chat.EventStart, "r"), shared(chat.EventMessage, ""),
		shared(chat.EventDelta, "r"), shared(chat.EventEnd, "other"), shared(chat.EventEnd, "r"), shared(chat.EventStart, "next")} {
		if err := sink.Replay(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}
	w := httptest.NewRecorder()
	if err := a.Serve(httptest.NewRequest("POST", "/", nil), w, f, []byte("first\n"), "r", typesEncoder{}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Body.String(), "first\nSTART r\nDELTA r\nEND r\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
}

// At shutdown a stream ends with the protocol's error, so its client
// resumes elsewhere.
func TestServeEndsAtShutdown(t *testing.T) {
	ctx := context.Background()
	h := newFakeHub()
	opened := 0
	a := NewAnswers(AnswersConfig{OnStream: func(d int) { opened += d }}, newPolicy(Config{}), h)
	f := a.Follow(ctx, "s", nil)
	defer f.Close()
	if err := f.Attached(ctx); err != nil {
		t.Fatal(err)
	}
	<-h.sinks
	a.Shutdown()
	a.Shutdown() // twice is once
	w := httptest.NewRecorder()
	if err := a.Serve(httptest.NewRequest("POST", "/", nil), w, f, nil, "r", typesEncoder{}); !errors.Is(err, errClosing) {
		t.Fatalf("Serve: %v", err)
	}
	if got := w.Body.String(); !strings.HasSuffix(got, "FAIL UNAVAILABLE\n") || opened != 0 {
		t.Errorf("wrote %q, %d streams open", got, opened)
	}
}
