package gateway_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/ratelimit"
	"github.com/tokencast/tokencast/internal/sse"
	"github.com/tokencast/tokencast/internal/stream"
	"github.com/tokencast/tokencast/internal/wsproto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const clientKey = "client-key-0123456789"

// buggyStore is the real bus with a bug: reading the conversation of
// session "boom" panics.
type buggyStore struct{ *bus.Bus }

// bug is the panic's text, which no client may see.
const bug = "a bug in the store at 10.0.0.7"

func (s buggyStore) Conversation(ctx context.Context, session string) (chat.Conversation, error) {
	if session == "boom" {
		panic(bug)
	}
	return s.Bus.Conversation(ctx, session)
}

// newServer is the gateway on real parts, wired as the app wires them:
// embedded NATS, the hub, one Operations, the WebSocket engine and SSE
// behind one stream policy.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b, err := bus.Open(context.Background(), bus.Config{DataDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(b, log, hub.Config{MaxPending: 64})
	clients, _ := auth.ParseKeys(clientKey, auth.Client)
	services, _ := auth.ParseKeys("", auth.Service)
	guard := auth.NewGuard(b, nil, log)
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{
		Store: buggyStore{b}, MaxMessageBytes: 1024, Log: log, Sessions: guard, Asks: ratelimit.New(0, 1),
		ModelNames: []string{"demo:default"}, DefaultModel: "demo:default",
	}})
	ops := graph.NewOperations(es, graph.Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200, MaxFields: 500}, guard, log)
	policy := stream.NewPolicy(stream.Config{}, auth.NewAuthenticator(clients, services, nil), log)
	ws := wsproto.NewServer(wsproto.Config{KeepAlive: time.Hour}, policy, ops, h, log)
	events := sse.NewServer(sse.Config{}, policy, ops, h, log)
	gw := gateway.New(gateway.Config{}, gateway.Deps{Policy: policy, GraphQL: ops, WebSocket: ws, SSE: events})
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		events.Shutdown()
		_ = ws.Shutdown(ctx)
		srv.Close()
		h.Close()
		b.Close()
	})
	return srv
}

const (
	panics = `{ conversation(sessionId: "boom") { sessionId } }`
	works  = `{ conversation(sessionId: "fine") { sessionId } }`
)

// result is a GraphQL result as a client reads it.
type result struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// A resolver that panics gets the same answer on every transport: an error
// with a stable code and a safe message, never the panic's text; and the
// server, and the connection it came on, go on serving the next request.
func TestAPanickingResolverIsAnErrorWithACodeOnEveryTransport(t *testing.T) {
	srv := newServer(t)
	transports := []struct {
		name string
		// open returns how to ask on one connection (or request by request),
		// each answer's raw text and the result in it.
		open func(t *testing.T) (ask func(query string) (raw string, res result), done func())
	}{
		{"POST", func(t *testing.T) (func(string) (string, result), func()) {
			return func(query string) (string, result) { return post(t, srv.URL, query, "application/json") }, func() {}
		}},
		{"SSE", func(t *testing.T) (func(string) (string, result), func()) {
			return func(query string) (string, result) { return post(t, srv.URL, query, "text/event-stream") }, func() {}
		}},
		{"graphql-transport-ws", func(t *testing.T) (func(string) (string, result), func()) {
			c := dial(t, srv.URL+"/graphql", wsproto.SubprotocolTransportWS)
			send(t, c, `{"type":"connection_init","payload":{"x-api-key":"`+clientKey+`"}}`)
			expect(t, c, "connection_ack")
			n := 0
			return func(query string) (string, result) {
				n++
				id := strings.Repeat("q", n)
				payload, _ := json.Marshal(map[string]any{"query": query})
				send(t, c, `{"id":"`+id+`","type":"subscribe","payload":`+string(payload)+`}`)
				raw := expect(t, c, `"next"`)
				expect(t, c, `"complete"`)
				var msg struct{ Payload result }
				_ = json.Unmarshal([]byte(raw), &msg)
				return raw, msg.Payload
			}, func() { c.Close() }
		}},
		{"AppSync graphql-ws", func(t *testing.T) (func(string) (string, result), func()) {
			header := base64.StdEncoding.EncodeToString([]byte(`{"host":"example.com","x-api-key":"` + clientKey + `"}`))
			c := dial(t, srv.URL+"/graphql/realtime?header="+header+"&payload=e30=", wsproto.SubprotocolGraphQLWS)
			send(t, c, `{"type":"connection_init"}`)
			expect(t, c, "connection_ack")
			n := 0
			return func(query string) (string, result) {
				n++
				id := strings.Repeat("q", n)
				data, _ := json.Marshal(map[string]any{"query": query})
				start, _ := json.Marshal(map[string]any{"id": id, "type": "start", "payload": map[string]any{
					"data": string(data), "extensions": map[string]any{"authorization": map[string]any{"host": "example.com", "x-api-key": clientKey}},
				}})
				send(t, c, string(start))
				raw := expect(t, c, `"data"`)
				expect(t, c, `"complete"`)
				var msg struct{ Payload result }
				_ = json.Unmarshal([]byte(raw), &msg)
				return raw, msg.Payload
			}, func() { c.Close() }
		}},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ask, done := tr.open(t)
			defer done()
			raw, res := ask(panics)
			if len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != chat.CodeInternal || res.Errors[0].Message != "internal error" {
				t.Fatalf("a panicking resolver answered %s; want one error, INTERNAL, \"internal error\"", raw)
			}
			if strings.Contains(raw, bug) || strings.Contains(raw, "panic") || strings.Contains(raw, "goroutine") {
				t.Fatalf("the answer shows the panic: %s", raw)
			}
			// The same connection (or the server, for one request per
			// connection) answers the next question.
			raw, res = ask(works)
			if len(res.Errors) > 0 || string(res.Data) != `{"conversation":{"sessionId":"fine"}}` {
				t.Fatalf("after the panic, the next query answered %s", raw)
			}
		})
	}
}

// post asks over HTTP, accepting JSON or an event stream.
func post(t *testing.T, url, query, accept string) (string, result) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	req.Header.Set("X-Api-Key", clientKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if accept != "text/event-stream" {
		raw, _ := io.ReadAll(resp.Body)
		var res result
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("status %d, body %s", resp.StatusCode, raw)
		}
		return string(raw), res
	}
	// One "next" event with the result, then "complete".
	var next string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok && next == "" {
			next = data
		}
		if line == "event: complete" {
			break
		}
	}
	var res result
	if err := json.Unmarshal([]byte(next), &res); err != nil {
		t.Fatalf("status %d, no result event: %q", resp.StatusCode, next)
	}
	return next, res
}

func dial(t *testing.T, url, subprotocol string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// expect reads frames until one contains want (keep-alives come between),
// and returns it.
func expect(t *testing.T, c *websocket.Conn, want string) string {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if strings.Contains(string(data), want) {
			return string(data)
		}
		if strings.Contains(string(data), `"error"`) {
			t.Fatalf("waiting for %s, got %s", want, data)
		}
	}
}
