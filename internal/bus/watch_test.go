package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// watchModes are the two ways live events reach a watch: from this process's
// own acks on a solo node, and republished by JetStream when other processes
// may publish (a listening embedded server, a cluster, an external NATS).
var watchModes = []struct {
	name   string
	listen string
	solo   bool
}{
	{"solo", "", true},
	{"listening", "127.0.0.1:-1", false},
}

func openMode(tb testing.TB, listen string) *Bus {
	tb.Helper()
	b, err := Open(context.Background(), Config{DataDir: tb.TempDir(), Listen: listen}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}

// collector gathers what a callback is given: a watch's events, a folder's
// records.
type collector[T any] struct {
	mu   sync.Mutex
	got  []T
	more chan struct{}
}

func newCollector[T any]() *collector[T] { return &collector[T]{more: make(chan struct{}, 1)} }

func (c *collector[T]) add(v T) {
	c.mu.Lock()
	c.got = append(c.got, v)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

// wait returns what came once n have come.
func (c *collector[T]) wait(t *testing.T, n int) []T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := append([]T(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-timeout:
			t.Fatalf("%d delivered, want %d", len(got), n)
		}
	}
}

// TestWatchDeliversEachStoredEventOnceInOrder: a watch gets every event of
// its session stored after it started, once and in order, and none of other
// sessions'; also an event stored without its ack being seen (on a solo node,
// a position the acks skipped is read from the history before the next one).
func TestWatchDeliversEachStoredEventOnceInOrder(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			b := openMode(t, mode.listen)
			if b.solo != mode.solo {
				t.Fatalf("solo = %v with listen %q", b.solo, mode.listen)
			}
			ctx := context.Background()
			if _, err := b.PublishEvent(ctx, chat.Event{Type: chat.EventDelta, SessionID: "s1", RequestID: "r0", Message: "before", TimeStamp: time.Now()}, ""); err != nil {
				t.Fatal(err)
			}
			c := newCollector[chat.Event]()
			stop, from, err := b.Watch(ctx, "s1", c.add)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			delta := func(session string, i int) chat.Event {
				return chat.Event{Type: chat.EventDelta, SessionID: session, RequestID: "r1", Index: i, Message: strconv.Itoa(i), TimeStamp: time.Now()}
			}
			var want []uint64
			for i := 1; i <= 6; i++ {
				switch i {
				case 3:
					// Stored behind the publisher's back: no ack of
					// ours ever names it.
					data, err := encodeEvent(new(delta("s1", i)))
					if err != nil {
						t.Fatal(err)
					}
					ack, err := b.js.Publish(ctx, eventSubject("s1"), data)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, ack.Sequence)
				default:
					seq, err := b.PublishEvent(ctx, delta("s1", i), "")
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, seq)
				}
				if _, err := b.PublishEvent(ctx, delta("s2", i), ""); err != nil {
					t.Fatal(err)
				}
			}
			got := c.wait(t, len(want))
			var seqs []uint64
			for i, ev := range got {
				seqs = append(seqs, ev.Seq)
				if ev.SessionID != "s1" || ev.Index != i+1 || ev.Message != strconv.Itoa(i+1) {
					t.Errorf("event %d: %+v", i, ev)
				}
			}
			if fmt.Sprint(seqs) != fmt.Sprint(want) {
				t.Fatalf("delivered positions %v, want %v (watch from %d)", seqs, want, from)
			}
			// Nothing more comes: the next event of s1 is the next one
			// delivered.
			seq, err := b.PublishEvent(ctx, delta("s1", 7), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.wait(t, len(want)+1); got[len(want)].Seq != seq || len(got) != len(want)+1 {
				t.Fatalf("after the 7th event: %d events, the last at %d; want %d at %d", len(got), got[len(got)-1].Seq, len(want)+1, seq)
			}
		})
	}
}

// BenchmarkLiveEvent: a DELTA from its publish to its delivery by a watch,
// 1,000 sessions streaming at once, on a solo node (live copy from the ack)
// and on one that listens for other processes (live copy republished by
// JetStream).
func BenchmarkLiveEvent(b *testing.B) {
	for _, mode := range watchModes {
		b.Run(mode.name, func(b *testing.B) {
			bus := openMode(b, mode.listen)
			const sessions = 1000
			var delivered atomic.Int64
			done := make(chan struct{})
			target := atomic.Int64{}
			target.Store(-1)
			for i := range sessions {
				stop, _, err := bus.Watch(context.Background(), "s"+strconv.Itoa(i), func(chat.Event) {
					if delivered.Add(1) == target.Load() {
						close(done)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
			}
			var n, published atomic.Int64
			b.SetParallelism(sessions / 2) // × GOMAXPROCS goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				session := "s" + strconv.FormatInt(n.Add(1)%sessions, 10)
				ev := chat.Event{Type: chat.EventDelta, SessionID: session, RequestID: "r", Message: "token ", TimeStamp: time.Now()}
				var after uint64
				for i := 0; pb.Next(); i++ {
					ev.Index = i
					seq, err := bus.PublishEventAfter(context.Background(), ev, after)
					if err != nil {
						b.Error(err)
						return
					}
					after = seq
					published.Add(1)
				}
			})
			target.Store(published.Load())
			if delivered.Load() < published.Load() {
				<-done
			}
			b.StopTimer()
		})
	}
}
