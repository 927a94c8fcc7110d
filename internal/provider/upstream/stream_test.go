package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Many calls at once to one provider keep their connections: a second wave
// as wide as the first reuses them instead of dialing again (Go's default
// client keeps 2 per host, so 18 of 20 calls would dial, and shake hands
// with TLS, anew).
func TestManyCallsToOneProviderReuseTheirConnections(t *testing.T) {
	const wide = 20
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	var dialed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: hi\n\n")
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		if s == http.StateNew {
			dialed.Add(1)
		}
		states[c] = s
	}
	srv.Start()
	t.Cleanup(srv.Close)
	idle := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range states {
			if s == http.StateIdle {
				n++
			}
		}
		return n
	}

	// Each call holds its connection until every call of its wave has one.
	wave := func() (reused int32) {
		var n atomic.Int32
		var all sync.WaitGroup
		all.Add(wide)
		var wg sync.WaitGroup
		for range wide {
			wg.Go(func() {
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
					if info.Reused {
						n.Add(1)
					}
				}})
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("{}"))
				reached := false
				_, err := Stream(ctx, "test", Client(nil), req, func(body io.Reader) (chat.Final, error) {
					reached = true
					all.Done()
					all.Wait()
					_, err := io.Copy(io.Discard, body)
					return chat.Final{}, err
				})
				if !reached {
					all.Done() // the others go on
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return n.Load()
	}
	wave()
	if got := dialed.Load(); got != wide {
		t.Fatalf("the first wave of %d calls at once opened %d connections", wide, got)
	}
	for deadline := time.Now().Add(10 * time.Second); idle() < wide; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections idle after the first wave", idle(), wide)
		}
	}
	// A connection goes back to the client's pool a moment after its
	// body's end was read: nearly all are back by now, never more than 2
	// with Go's default client.
	if reused := wave(); reused < wide/2 {
		t.Fatalf("the second wave reused %d of %d connections (dialed %d in all)", reused, wide, dialed.Load())
	}
}
