package sse

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// handingHub hands each subscription's sink to the test, which plays the
// hub's part: it delivers events from one goroutine.
type handingHub struct{ sinks chan hub.Sink }

func (h handingHub) Subscribe(ctx context.Context, session string, after *uint64, sink hub.Sink) (*hub.Subscriber, error) {
	h.sinks <- sink
	return nil, nil
}

type allowAll struct{}

func (allowAll) Authorize(context.Context, *auth.Principal, string) error { return nil }

// newStream serves SSE for an authenticated caller (as the gateway hands it
// one) and opens a subscription; it returns the server, the client's
// response, and the sink the hub feeds.
func newStream(t *testing.T, cfg Config) (*Server, *http.Response, hub.Sink) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ops := graph.NewOperations(graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{}}), graph.Limits{}, allowAll{}, log)
	h := handingHub{sinks: make(chan hub.Sink, 1)}
	s := NewServer(cfg, stream.NewPolicy(stream.Config{}, nil, log), ops, h, log)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := auth.WithClientAddr(auth.WithPrincipal(r.Context(), &auth.Principal{ID: "alice"}), netip.MustParseAddr("192.0.2.1"))
		s.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	// A guard against a test that hangs, not a timing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL,
		strings.NewReader(`{"query":"subscription { onSendMessage(sessionId: \"s-1\") { message } }"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("HTTP %d %s", resp.StatusCode, body)
	}
	return s, resp, <-h.sinks
}

func delta(msg string) *hub.Shared {
	return &hub.Shared{Event: chat.Event{Type: chat.EventDelta, SessionID: "s-1", Message: msg}}
}

// A client that stops reading never holds the hub up: once its queue is
// full an event is refused at once, and its stream ends after what was
// queued, so it reconnects and resumes from its cursor.
func TestASlowStreamEndsAndNeverBlocksTheHub(t *testing.T) {
	_, resp, sink := newStream(t, Config{QueueSize: 2, WriteTimeout: time.Minute})
	big := strings.Repeat("x", 64<<10)
	refused := false
	// The socket's buffers take some events before the writer blocks.
	for range 10000 {
		if !sink.Deliver(delta(big)) {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("a client that does not read was never refused an event")
	}
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n == 0 {
		t.Fatalf("the stream of a slow client did not end cleanly after what was queued: %d bytes, %v", n, err)
	}
}

// Events reach the client in order, each as a "next" event with the data
// the subscription selected; shutdown ends the stream.
func TestEventsStreamUntilShutdown(t *testing.T) {
	s, resp, sink := newStream(t, Config{})
	for _, msg := range []string{"Hel", "lo"} {
		if !sink.Deliver(delta(msg)) {
			t.Fatalf("event %q refused", msg)
		}
	}
	r := bufio.NewReader(resp.Body)
	for _, msg := range []string{"Hel", "lo"} {
		want := `data: {"data":{"onSendMessage":{"message":"` + msg + `"}}}`
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if strings.HasPrefix(line, "data: ") {
				if got := strings.TrimSpace(line); got != want {
					t.Fatalf("got %s, want %s", got, want)
				}
				break
			}
		}
	}
	s.Shutdown()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the stream did not end at shutdown: %v", err)
	}
}
