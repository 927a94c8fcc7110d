package wsproto

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestIdleConnectionIsOneGoroutine: an idle subscribed connection costs one
// goroutine (its reader); the writer runs only while there is something to
// write. Two per connection would double the stacks of every idle client.
func TestIdleConnectionIsOneGoroutine(t *testing.T) {
	s := newTestServer(t)
	url := "ws" + strings.TrimPrefix(s.http.URL, "http") + "/graphql"
	d := websocket.Dialer{Subprotocols: []string{SubprotocolTransportWS}, HandshakeTimeout: 5 * time.Second}
	subscribe := func(id string) *websocket.Conn {
		t.Helper()
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		for _, m := range []string{
			`{"type":"connection_init","payload":{"x-api-key":"` + clientKey + `"}}`,
			`{"id":"` + id + `","type":"subscribe","payload":{"query":"subscription { onSendMessage(sessionId: \"s1\") { message } }"}}`,
		} {
			if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, got, err := ws.ReadMessage(); err != nil || !strings.Contains(string(got), "connection_ack") {
			t.Fatalf("want connection_ack, got %s %v", got, err)
		}
		return ws
	}
	first := subscribe("0") // the session's watch is shared by all that follow
	settle := func(want func(int) bool) int {
		n := runtime.NumGoroutine()
		for end := time.Now().Add(10 * time.Second); !want(n) && time.Now().Before(end); n = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
		}
		return n
	}
	// A first batch starts whatever runs once for all connections (lazily
	// started parts of the server, NATS); the count is read once it holds
	// still, and only the second batch is measured.
	for i := range 10 {
		subscribe(string(rune('A' + i)))
	}
	base := runtime.NumGoroutine()
	for still := 0; still < 5; {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != base {
			base, still = n, 0
			continue
		}
		still++
	}
	const conns = 50
	for i := range conns {
		subscribe(string(rune('a' + i%26)))
	}
	perConn := func(n int) float64 { return float64(n-base) / conns }
	if got := perConn(settle(func(n int) bool { return perConn(n) <= 1 })); got > 1 {
		t.Fatalf("%.2f goroutines per idle subscribed connection, want 1", got)
	}
	// The connection still writes when an event comes: the writer starts
	// on demand.
	s.publish(t, "s1", "hi")
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := first.ReadMessage(); err != nil || !strings.Contains(string(got), `"message":"hi"`) {
		t.Fatalf("want the event, got %s %v", got, err)
	}
}
