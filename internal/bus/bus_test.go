package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestWatchAttemptsSeesEveryClaimOnItsAnswer: a worker learns of the claim
// standing when it starts watching and of every later claim on its own
// answer, and of nothing about other answers or the session's events.
func TestWatchAttemptsSeesEveryClaimOnItsAnswer(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	claim := func(request string) {
		t.Helper()
		if _, err := b.ClaimAttempt(ctx, "s1", request, 1); err != nil {
			t.Fatal(err)
		}
	}
	claim("r1") // attempt 1, before the watch
	seen := make(chan uint64, 8)
	stop, err := b.WatchAttempts("s1", "r1", func(attempt uint64) { seen <- attempt })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	claim("r2") // another answer of the session
	if _, err := b.PublishEvent(ctx, chat.Event{Type: chat.EventDelta, SessionID: "s1", RequestID: "r1", Attempt: 9, TimeStamp: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	claim("r1") // attempt 2: a redelivery took it over
	for _, want := range []uint64{1, 2} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("attempt %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("attempt %d never seen", want)
		}
	}
	select {
	case got := <-seen:
		t.Fatalf("attempt %d seen: not a claim on this answer", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestReadyNeedsNATSAndEveryStream: Ready fails, saying which, when a stream
// is gone or NATS cannot be reached.
func TestReadyNeedsNATSAndEveryStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := open(t)
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("a fresh bus is not ready: %v", err)
	}
	if err := b.js.DeleteStream(ctx, turnsStream); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(ctx); err == nil || !strings.Contains(err.Error(), "turns stream") {
		t.Fatalf("Ready without the turns stream: %v", err)
	}

	srv := startExternalNATSServer(t, func(*server.Options) {})
	ext, err := openExternal(t, Config{URLs: srv.ClientURL()}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Ready(ctx); err != nil {
		t.Fatalf("external bus not ready: %v", err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	// As /readyz asks: within 2 s.
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	if err := ext.Ready(short); err == nil {
		t.Fatal("ready with its NATS gone")
	}
}

// TestConcurrentPublishesEachGetTheirOwnPosition: many answers publish at
// once through the one publishing goroutine; each publish returns the
// position its own event was stored at, and every event is stored once.
func TestConcurrentPublishesEachGetTheirOwnPosition(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	const sessions, perSession = 50, 40
	errs := make(chan error, sessions)
	for s := range sessions {
		go func() {
			session := "s" + strconv.Itoa(s)
			for i := range perSession {
				ev := chat.Event{Type: chat.EventDelta, SessionID: session, RequestID: "r", Index: i, Message: strconv.Itoa(i), TimeStamp: time.Now()}
				seq, err := b.PublishEvent(ctx, ev, session+".r."+strconv.Itoa(i))
				if err != nil {
					errs <- err
					return
				}
				var stored *chat.Event
				err = b.ReplayEvents(ctx, session, seq, seq, func(got chat.Event) error { stored = &got; return nil })
				if err != nil || stored == nil || stored.Index != i || stored.Message != ev.Message {
					errs <- fmt.Errorf("%s event %d: position %d holds %+v (%v)", session, i, seq, stored, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, last, err := b.History(ctx); err != nil || last != sessions*perSession {
		t.Fatalf("history ends at %d (%v), want %d events", last, err, sessions*perSession)
	}
}

// TestPublishFailsOnceClosed: a publish after the bus closed returns an
// error instead of waiting for an acknowledgement that cannot come.
func TestPublishFailsOnceClosed(t *testing.T) {
	b, err := Open(context.Background(), Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	done := make(chan error, 1)
	go func() {
		_, err := b.PublishEvent(context.Background(), chat.Event{Type: chat.EventDelta, SessionID: "s", TimeStamp: time.Now()}, "")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a publish on a closed bus succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a publish on a closed bus is still waiting")
	}
}

// BenchmarkPublishEventConcurrent: 1,000 answers publishing at once, as a
// node streaming 1,000 answers does.
func BenchmarkPublishEventConcurrent(b *testing.B) {
	bus, err := Open(context.Background(), Config{DataDir: b.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	var n atomic.Int64
	b.SetParallelism(500) // × GOMAXPROCS goroutines
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		session := "s" + strconv.FormatInt(n.Add(1), 10)
		ev := chat.Event{Type: chat.EventDelta, SessionID: session, RequestID: "r", Message: "token ", TimeStamp: time.Now()}
		for i := 0; pb.Next(); i++ {
			ev.Index = i
			if _, err := bus.PublishEvent(context.Background(), ev, session+".r."+strconv.Itoa(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRepublishedEventIsStoredOnce: an event published again under its id
// (a retried publish, a new attempt publishing the END an earlier one
// committed) is a no-op that returns the first copy's position, for as long
// as a redelivery can take; and no longer, since the stream holds every id
// of that window in memory.
func TestRepublishedEventIsStoredOnce(t *testing.T) {
	b, err := Open(context.Background(), Config{DataDir: t.TempDir(), AckWait: 45 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	ev := chat.Event{Type: chat.EventEnd, SessionID: "s1", RequestID: "r1", Index: 3, TimeStamp: time.Now()}
	first, err := b.PublishEvent(ctx, ev, "s1.r1.1.3.END")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.PublishEvent(ctx, ev, "s1.r1.2.3.END") // another attempt's own END
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.PublishEvent(ctx, ev, "s1.r1.1.3.END")
	if err != nil {
		t.Fatal(err)
	}
	if again != first || other == first {
		t.Fatalf("positions %d, %d, then %d again: want the republished event at its first position", first, other, again)
	}
	if _, last, _ := b.History(ctx); last != other {
		t.Fatalf("history ends at %d, want %d: the republished event was stored again", last, other)
	}
	info, err := b.events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != 90*time.Second {
		t.Fatalf("ids are remembered for %v, want twice the ack wait (90s)", info.Config.Duplicates)
	}
}

// TestDeltaPublishedWithoutIDIsFoundAfterItsPredecessor: a DELTA is stored
// without a message id (nothing for the stream to remember per token), and
// the look a failed publish makes before publishing again finds it after the
// answer's previous event, past other sessions' events and a service's
// message in the same session, and finds nothing for an event never stored.
func TestDeltaPublishedWithoutIDIsFoundAfterItsPredecessor(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	start := chat.Event{Type: chat.EventStart, SessionID: "s1", RequestID: "r1", Attempt: 2, TimeStamp: time.Now()}
	after, err := b.PublishEvent(ctx, start, "s1.r1.2.0.START")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishEvent(ctx, chat.Event{Type: chat.EventDelta, SessionID: "s2", RequestID: "r9", Index: 1, Attempt: 2, TimeStamp: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishEvent(ctx, chat.Event{Type: chat.EventMessage, SessionID: "s1", Message: "from a service", TimeStamp: time.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	delta := chat.Event{Type: chat.EventDelta, SessionID: "s1", RequestID: "r1", Index: 1, Attempt: 2, Message: "Hel", TimeStamp: time.Now()}
	seq, err := b.PublishEventAfter(ctx, delta, after)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.events.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if id := raw.Header.Get(jetstream.MsgIDHeader); id != "" {
		t.Errorf("the DELTA was stored under message id %q", id)
	}
	if got, found, err := b.landed(ctx, &delta, after); err != nil || !found || got != seq {
		t.Fatalf("looking for the DELTA after %d: %d, %v, %v; want it at %d", after, got, found, err, seq)
	}
	for name, ev := range map[string]chat.Event{
		"the next index":     {Type: chat.EventDelta, SessionID: "s1", RequestID: "r1", Index: 2, Attempt: 2},
		"an earlier attempt": {Type: chat.EventDelta, SessionID: "s1", RequestID: "r1", Index: 1, Attempt: 1},
		"another session":    {Type: chat.EventDelta, SessionID: "s3", RequestID: "r1", Index: 1, Attempt: 2},
	} {
		if got, found, err := b.landed(ctx, &ev, after); err != nil || found {
			t.Errorf("%s: found at %d (%v), but it was never stored", name, got, err)
		}
	}
	if _, found, err := b.landed(ctx, &delta, seq); err != nil || found {
		t.Errorf("found the DELTA after its own position (%v)", err)
	}
}
