package wsproto

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/ratelimit"
	"github.com/tokencast/tokencast/internal/stream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	clientKey  = "client-key-0123456789"
	serviceKey = "service-key-0123456789"
	wrongKey   = "wrong-key-0123456789"
	// otherKey is another client: bob, when clientKey is alice.
	otherKey = "other-key-0123456789"
)

// testServer is the engine on real parts: embedded NATS, the hub, gqlgen's
// executor and API-key auth, behind an httptest server.
type testServer struct {
	http *httptest.Server
	ops  *graph.Operations
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerWith(t, testOptions{})
}

// newTestServerOn is newTestServer with the hub reading events through
// source, which wraps the real bus.
func newTestServerOn(t *testing.T, source func(*bus.Bus) hub.Source) *testServer {
	t.Helper()
	return newTestServerWith(t, testOptions{source: source})
}

// testOptions change one part of the test server; zero values keep it.
type testOptions struct {
	source     func(*bus.Bus) hub.Source // wraps the bus the hub reads
	executor   func(Executor) Executor   // wraps gqlgen's executor
	maxPayload int                       // AppSync's limit (2048)
	sigv4      SignatureVerifier         // AppSync Events' SigV4 auth objects
}

func newTestServerWith(t *testing.T, o testOptions) *testServer {
	t.Helper()
	if o.source == nil {
		o.source = func(b *bus.Bus) hub.Source { return b }
	}
	if o.maxPayload == 0 {
		o.maxPayload = 2048
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{DataDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(o.source(b), log, hub.Config{MaxPending: 64})
	clients, _ := auth.ParseKeys(clientKey+","+otherKey, auth.Client)
	services, _ := auth.ParseKeys(serviceKey, auth.Service)
	guard := auth.NewGuard(b, nil, log)
	resolver := &graph.Resolver{
		Store: b, MaxMessageBytes: 1024, Log: log, Sessions: guard, Asks: ratelimit.New(0, 1),
		ModelNames: []string{"demo:default"}, DefaultModel: "demo:default",
	}
	es := graph.NewExecutableSchema(graph.Config{Resolvers: resolver})
	ops := graph.NewOperations(es, graph.Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200}, guard, log)
	var exec Executor = ops
	if o.executor != nil {
		exec = o.executor(ops)
	}
	ws := NewServer(Config{
		InitTimeout: 300 * time.Millisecond, MaxSubscriptions: 2, MaxPayload: o.maxPayload,
		KeepAlive: time.Hour, ConnectionTimeout: 300 * time.Second, Publish: resolver, SigV4: o.sigv4,
	}, stream.NewPolicy(stream.Config{}, auth.NewAuthenticator(clients, services, nil), log), exec, h, log)
	mux := http.NewServeMux()
	mux.Handle("/graphql", ws)
	mux.Handle("/graphql/realtime", ws)
	mux.Handle("/event/realtime", ws)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = ws.Shutdown(sctx)
		srv.Close()
		h.Close()
		b.Close()
	})
	return &testServer{http: srv, ops: ops}
}

// publish sends a message into a session as a service, the way the AWS
// sample's orchestrator does with sendMessage.
func (s *testServer) publish(t *testing.T, session, message string) {
	t.Helper()
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{ID: "svc", Kind: auth.Service})
	op, errs := s.ops.Prepare(ctx, &graphql.RawParams{
		Query:     `mutation($i: SendMessageInput!) { sendMessage(input: $i) { message } }`,
		Variables: map[string]any{"i": map[string]any{"sessionId": session, "message": message, "locale": "en"}},
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if resp := s.ops.Execute(ctx, op); len(resp.Errors) > 0 {
		t.Fatal(resp.Errors)
	}
}

// step is one client action and the server frames it must cause, in order.
type step struct {
	send    string // a client frame
	publish string // or: a message published into session "s1"
	sleep   time.Duration
	want    []string // server frames, compared as JSON
}

type conversation struct {
	name         string
	path         string // with query; default /graphql
	subprotocols []string
	header       http.Header
	steps        []step
	close        int // the close code that ends it; 0: stays open
}

func (s *testServer) run(t *testing.T, c conversation) {
	t.Helper()
	path := c.path
	if path == "" {
		path = "/graphql"
	}
	d := websocket.Dialer{Subprotocols: c.subprotocols, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(s.http.URL, "http")+path, c.header)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	if len(c.subprotocols) > 0 && c.close != 4406 {
		if got := resp.Header.Get("Sec-Websocket-Protocol"); got != c.subprotocols[0] && !(got == SubprotocolGraphQLWS && strings.HasPrefix(c.subprotocols[0], headerSubprotocolPrefix)) {
			t.Fatalf("subprotocol %q echoed, offered %q", got, c.subprotocols)
		}
	}
	for i, st := range c.steps {
		switch {
		case st.send != "":
			if err := ws.WriteMessage(websocket.TextMessage, []byte(st.send)); err != nil {
				t.Fatalf("step %d: write: %v", i, err)
			}
		case st.publish != "":
			s.publish(t, "s1", st.publish)
		}
		time.Sleep(st.sleep)
		for _, want := range st.want {
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, got, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("step %d: want %s, read: %v", i, want, err)
			}
			if !sameJSON(t, got, []byte(want)) {
				t.Fatalf("step %d:\n got %s\nwant %s", i, got, want)
			}
		}
	}
	if c.close == 0 {
		return
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, got, err := ws.ReadMessage()
		if err == nil {
			t.Fatalf("want close %d, got frame %s", c.close, got)
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d, got %v", c.close, err)
		}
		if ce.Code != c.close {
			t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, c.close)
		}
		return
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("server sent invalid JSON %s", a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("bad expectation %s: %v", b, err)
	}
	return matchJSON(va, vb)
}

// matchJSON compares a frame with what is wanted: "*" in want matches any
// value (an AppSync Events publish's identifiers), and when want's "event"
// is an object and got's a string of JSON (as AppSync Events sends an
// event), got's event is compared by want's keys only.
func matchJSON(got, want any) bool {
	if w, ok := want.(string); ok && w == "*" {
		return true
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return false
			}
			if wantEv, isObj := wv.(map[string]any); isObj && k == "event" {
				gotEv, isStr := gv.(string)
				var ev map[string]any
				if !isStr || json.Unmarshal([]byte(gotEv), &ev) != nil {
					return false
				}
				for ek, ewv := range wantEv {
					if !matchJSON(ev[ek], ewv) {
						return false
					}
				}
				continue
			}
			if !matchJSON(gv, wv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !matchJSON(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// appSyncStart is an AppSync start: data is a JSON string; key, when set,
// authorizes this subscription.
func appSyncStart(id, query, session, key string) string {
	data, _ := json.Marshal(map[string]any{"query": query, "variables": map[string]any{"sessionId": session}})
	payload := map[string]any{"data": string(data)}
	if key != "" {
		payload["extensions"] = map[string]any{"authorization": map[string]any{"host": "example.com", "x-api-key": key}}
	}
	b, _ := json.Marshal(map[string]any{"id": id, "type": "start", "payload": payload})
	return string(b)
}

func authHeader(enc *base64.Encoding, key string) string {
	return enc.EncodeToString([]byte(`{"host":"example.com","x-amz-date":"20240101T000000Z","x-api-key":"` + key + `"}`))
}

const watch = `subscription($sessionId: String!) { onSendMessage(sessionId: $sessionId) { sessionId message type } }`

const (
	ack       = `{"type":"connection_ack","payload":{"connectionTimeoutMs":300000}}`
	ka        = `{"type":"ka"}`
	init_     = `{"type":"connection_init"}`
	dataHi    = `{"type":"data","id":"1","payload":{"data":{"onSendMessage":{"sessionId":"s1","message":"hi","type":"MESSAGE"}}}}`
	startAck1 = `{"type":"start_ack","id":"1"}`
)

func appSyncErr(id, errorType, message string, code int) string {
	e := map[string]any{"errorType": errorType, "message": message}
	if code != 0 {
		e["errorCode"] = code
	}
	m := map[string]any{"type": "error", "payload": map[string]any{"errors": []any{e}}}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func connErr(errorType, message string, code int) string {
	b, _ := json.Marshal(map[string]any{"type": "connection_error", "payload": map[string]any{"errors": []any{map[string]any{"errorType": errorType, "message": message, "errorCode": code}}}})
	return string(b)
}

func TestAppSyncConformance(t *testing.T) {
	s := newTestServer(t)
	gws := []string{SubprotocolGraphQLWS}
	viaQuery := "/graphql?header=" + authHeader(base64.StdEncoding, clientKey) + "&payload=e30="
	const unauthorized = "You are not authorized to make this call."
	cases := []conversation{
		{name: "handshake: ack with connectionTimeoutMs, then ka", path: viaQuery, subprotocols: gws,
			steps: []step{{send: init_, want: []string{ack, ka}}}},
		{name: "subscribe, receive data, stop gets complete", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch, "s1", clientKey), want: []string{startAck1}},
			{publish: "hi", want: []string{dataHi}},
			{send: `{"type":"stop","id":"1"}`, want: []string{`{"type":"complete","id":"1"}`}},
		}},
		{name: "auth in a header- subprotocol (base64url, unpadded), only graphql-ws echoed", path: "/graphql/realtime",
			subprotocols: []string{"header-" + authHeader(base64.RawURLEncoding, clientKey), SubprotocolGraphQLWS},
			steps:        []step{{send: init_, want: []string{ack, ka}}, {send: appSyncStart("1", watch, "s1", ""), want: []string{startAck1}}}},
		{name: "auth in ?header= without padding", path: "/graphql/realtime?header=" + authHeader(base64.RawStdEncoding, clientKey) + "&payload=e30", subprotocols: gws,
			steps: []step{{send: init_, want: []string{ack, ka}}}},
		{name: "auth in plain HTTP headers", subprotocols: gws, header: http.Header{"X-Api-Key": {clientKey}},
			steps: []step{{send: init_, want: []string{ack, ka}}}},
		{name: "a wrong key: connection_error 401, then close", path: "/graphql?header=" + authHeader(base64.StdEncoding, wrongKey), subprotocols: gws,
			steps: []step{{send: init_, want: []string{connErr("UnauthorizedException", unauthorized, 401)}}}, close: 4403},
		{name: "no key: connection_error 401", subprotocols: gws,
			steps: []step{{send: init_, want: []string{connErr("UnauthorizedException", unauthorized, 401)}}}, close: 4403},
		{name: "a malformed auth header: connection_error 400", path: "/graphql?header=%21%21not-base64", subprotocols: gws,
			steps: []step{{send: init_, want: []string{connErr("BadRequestException", errAuthObject.Error(), 400)}}}, close: 4403},
		{name: "a subscription with a wrong key of its own is refused", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch, "s1", wrongKey), want: []string{appSyncErr("1", "UnauthorizedException", unauthorized, 401)}},
		}},
		{name: "a duplicate id is refused, the first keeps running", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch, "s1", ""), want: []string{startAck1}},
			{send: appSyncStart("1", watch, "s1", ""), want: []string{appSyncErr("1", "DuplicatedOperationError", `an operation with id "1" is already running`, 400)}},
			{publish: "hi", want: []string{dataHi}},
		}},
		{name: "the subscription cap", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch, "s1", ""), want: []string{startAck1}},
			{send: appSyncStart("2", watch, "s1", ""), want: []string{`{"type":"start_ack","id":"2"}`}},
			{send: appSyncStart("3", watch, "s1", ""), want: []string{appSyncErr("3", "MaxSubscriptionsReachedError", "this connection has 2 subscriptions, the most it may have", 400)}},
		}},
		{name: "start before connection_init", path: viaQuery, subprotocols: gws, steps: []step{
			{send: appSyncStart("1", watch, "s1", ""), want: []string{appSyncErr("1", "UnauthorizedException", "send connection_init first", 401)}},
		}},
		{name: "start whose data is not a GraphQL request", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: `{"id":"1","type":"start","payload":{"data":"{nope"}}`, want: []string{appSyncErr("1", "BadRequestException", errInvalidStart.Error(), 400)}},
		}},
		{name: "a payload over the limit", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch+strings.Repeat(" ", 2100), "s1", ""), want: []string{appSyncErr("1", "PayloadTooLargeException", "the subscription payload is larger than 2048 bytes", 400)}},
		}},
		{name: "an invalid sessionId is a GraphQL error with its code", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: appSyncStart("1", watch, "a b", ""), want: []string{appSyncErr("1", "INVALID_SESSION_ID", "sessionId must be 1 to 128 letters, digits, '-' or '_'", 0)}},
		}},
		{name: "an unknown message type", path: viaQuery, subprotocols: gws, steps: []step{
			{send: init_, want: []string{ack, ka}},
			{send: `{"type":"bogus","id":"7"}`, want: []string{appSyncErr("7", "UnsupportedOperation", `unsupported message type "bogus"`, 400)}},
		}},
		{name: "invalid JSON", path: viaQuery, subprotocols: gws, steps: []step{
			{send: `{not json`, want: []string{appSyncErr("", "BadRequestException", errInvalidMessage.Error(), 400)}},
		}},
		{name: "no connection_init in time", path: viaQuery, subprotocols: gws, close: 4408},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { s.run(t, c) })
	}
}

func TestLegacyApolloConformance(t *testing.T) {
	s := newTestServer(t)
	gws := []string{SubprotocolGraphQLWS}
	initKey := `{"type":"connection_init","payload":{"x-api-key":"` + clientKey + `"}}`
	start := func(id, query string, vars string) string {
		return `{"id":"` + id + `","type":"start","payload":{"query":` + strings.TrimSpace(mustJSON(query)) + `,"variables":` + vars + `}}`
	}
	cases := []conversation{
		{name: "subscribe (no start_ack), receive data, stop gets complete", subprotocols: gws, steps: []step{
			{send: initKey, want: []string{ack, ka}},
			{send: start("1", watch, `{"sessionId":"s1"}`), sleep: 100 * time.Millisecond},
			{publish: "hi", want: []string{dataHi}},
			{send: `{"type":"stop","id":"1"}`, want: []string{`{"type":"complete","id":"1"}`}},
		}},
		{name: "a query answers with data, then complete", subprotocols: gws, steps: []step{
			{send: initKey, want: []string{ack, ka}},
			{send: start("1", `{ __typename }`, `{}`), want: []string{`{"type":"data","id":"1","payload":{"data":{"__typename":"Query"}}}`, `{"type":"complete","id":"1"}`}},
		}},
		{name: "the key in connectionParams.headers", subprotocols: gws, steps: []step{
			{send: `{"type":"connection_init","payload":{"headers":{"x-api-key":"` + clientKey + `"}}}`, want: []string{ack, ka}},
		}},
		{name: "a wrong key: connection_error, then close", subprotocols: gws, steps: []step{
			{send: `{"type":"connection_init","payload":{"x-api-key":"` + wrongKey + `"}}`, want: []string{connErr("UnauthorizedException", "You are not authorized to make this call.", 401)}},
		}, close: 4403},
		{name: "a validation error is an error message with message and errors", subprotocols: gws, steps: []step{
			{send: initKey, want: []string{ack, ka}},
			{send: start("1", `subscription { onSendMessage(sessionId: "s1") { nope } }`, `{}`), want: []string{
				`{"type":"error","id":"1","payload":{"message":"Cannot query field \"nope\" on type \"SendMessageResponse\".","errors":[{"message":"Cannot query field \"nope\" on type \"SendMessageResponse\".","locations":[{"line":1,"column":49}],"extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}]}}`,
			}},
		}},
		{name: "connection_terminate closes normally", subprotocols: gws, steps: []step{
			{send: initKey, want: []string{ack, ka}},
			{send: `{"type":"connection_terminate"}`},
		}, close: 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { s.run(t, c) })
	}
}

func TestTransportWSConformance(t *testing.T) {
	s := newTestServer(t)
	tws := []string{SubprotocolTransportWS}
	initKey := `{"type":"connection_init","payload":{"x-api-key":"` + clientKey + `"}}`
	subscribe := func(id, query, vars string) string {
		return `{"id":"` + id + `","type":"subscribe","payload":{"query":` + strings.TrimSpace(mustJSON(query)) + `,"variables":` + vars + `}}`
	}
	sub1 := subscribe("1", watch, `{"sessionId":"s1"}`)
	cases := []conversation{
		{name: "subscribe, next, complete from the client", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: sub1, sleep: 100 * time.Millisecond},
			{publish: "hi", want: []string{`{"id":"1","type":"next","payload":{"data":{"onSendMessage":{"sessionId":"s1","message":"hi","type":"MESSAGE"}}}}`}},
			{send: `{"id":"1","type":"complete"}`},
			{send: `{"type":"ping"}`, want: []string{`{"type":"pong"}`}},
		}},
		{name: "a query: next, then complete", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: subscribe("q", `{ __typename }`, `{}`), want: []string{`{"id":"q","type":"next","payload":{"data":{"__typename":"Query"}}}`, `{"id":"q","type":"complete"}`}},
		}},
		{name: "ping gets pong, pong gets nothing", subprotocols: tws, steps: []step{
			{send: `{"type":"pong"}`},
			{send: `{"type":"ping","payload":{"x":1}}`, want: []string{`{"type":"pong"}`}},
		}},
		{name: "a validation error is error with a list, then nothing", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: subscribe("1", `subscription { onSendMessage(sessionId: "a b") { message } }`, `{}`), want: []string{
				`{"id":"1","type":"error","payload":[{"message":"sessionId must be 1 to 128 letters, digits, '-' or '_'","extensions":{"code":"INVALID_SESSION_ID"}}]}`,
			}},
			{send: `{"type":"ping"}`, want: []string{`{"type":"pong"}`}},
		}},
		{name: "the subscription cap", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: sub1},
			{send: subscribe("2", watch, `{"sessionId":"s1"}`)},
			{send: subscribe("3", watch, `{"sessionId":"s1"}`), want: []string{`{"id":"3","type":"error","payload":[{"message":"this connection has too many subscriptions","extensions":{"code":"TOO_MANY_SUBSCRIPTIONS"}}]}`}},
		}},
		{name: "4400 invalid JSON", subprotocols: tws, steps: []step{{send: `{nope`}}, close: 4400},
		{name: "4400 unknown type", subprotocols: tws, steps: []step{{send: `{"type":"start"}`}}, close: 4400},
		{name: "4400 subscribe without id", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: `{"type":"subscribe","payload":{"query":"{ __typename }"}}`},
		}, close: 4400},
		{name: "4401 subscribe before ack", subprotocols: tws, steps: []step{{send: sub1}}, close: 4401},
		{name: "4403 wrong key", subprotocols: tws, steps: []step{{send: `{"type":"connection_init","payload":{"x-api-key":"` + wrongKey + `"}}`}}, close: 4403},
		{name: "4406 unknown subprotocol", subprotocols: []string{"graphql-unknown"}, close: 4406},
		{name: "4406 no subprotocol", close: 4406},
		{name: "4408 init timeout", subprotocols: tws, close: 4408},
		{name: "4409 duplicate id", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: sub1},
			{send: sub1},
		}, close: 4409},
		{name: "4429 second connection_init", subprotocols: tws, steps: []step{
			{send: initKey, want: []string{`{"type":"connection_ack"}`}},
			{send: initKey},
		}, close: 4429},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { s.run(t, c) })
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// gatedSource holds every Watch until gate is closed, so a test can look at
// what the client sees while a subscription is being set up.
type gatedSource struct {
	*bus.Bus
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedSource) Watch(ctx context.Context, session string, fn func(chat.Event)) (func(), uint64, error) {
	close(g.entered)
	<-g.gate
	return g.Bus.Watch(ctx, session, fn)
}

// TestStartAckOnlyOnceLive: AppSync clients publish as soon as start_ack
// arrives, so start_ack must not be sent while the subscription is still
// being attached, or the first message can be missed.
func TestStartAckOnlyOnceLive(t *testing.T) {
	g := &gatedSource{entered: make(chan struct{}), gate: make(chan struct{})}
	s := newTestServerOn(t, func(b *bus.Bus) hub.Source { g.Bus = b; return g })
	var open sync.Once
	release := func() { open.Do(func() { close(g.gate) }) }
	t.Cleanup(release) // runs before the server's shutdown, even on failure
	d := websocket.Dialer{Subprotocols: []string{SubprotocolGraphQLWS}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(s.http.URL, "http")+"/graphql?header="+authHeader(base64.StdEncoding, clientKey)+"&payload=e30", nil)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, got, err := ws.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			frames <- string(got)
		}
	}()
	defer func() { ws.Close(); <-done }()
	next := func(want string) {
		t.Helper()
		select {
		case got, ok := <-frames:
			if !ok {
				t.Fatalf("connection closed, want %s", want)
			}
			if !sameJSON(t, []byte(got), []byte(want)) {
				t.Fatalf("got %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing received, want %s", want)
		}
	}
	for _, m := range []string{`{"type":"connection_init"}`, appSyncStart("1", watch, "s1", "")} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	next(ack)
	next(ka)
	<-g.entered
	select {
	case got := <-frames:
		t.Fatalf("sent %s while the subscription was not yet live", got)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	next(startAck1)
	s.publish(t, "s1", "hi")
	next(dataHi)
}

// panicky is an executor with a bug: it panics on one query.
type panicky struct{ Executor }

func (p panicky) Prepare(ctx context.Context, params *graphql.RawParams) (*graph.Operation, gqlerror.List) {
	if strings.Contains(params.Query, "boom") {
		panic("a bug")
	}
	return p.Executor.Prepare(ctx, params)
}

// TestAPanicClosesOnlyItsConnection: a bug met while handling one client's
// message closes that connection with 4500 and leaves the server and its
// other connections running.
func TestAPanicClosesOnlyItsConnection(t *testing.T) {
	s := newTestServerWith(t, testOptions{executor: func(e Executor) Executor { return panicky{e} }})
	transport := []string{SubprotocolTransportWS}
	initKey := `{"type":"connection_init","payload":{"x-api-key":"` + clientKey + `"}}`
	s.run(t, conversation{subprotocols: transport, steps: []step{
		{send: initKey, want: []string{`{"type":"connection_ack"}`}},
		{send: `{"id":"1","type":"subscribe","payload":{"query":"{ boom }"}}`},
	}, close: 4500})
	s.run(t, conversation{subprotocols: transport, steps: []step{
		{send: initKey, want: []string{`{"type":"connection_ack"}`}},
		{send: `{"id":"1","type":"subscribe","payload":{"query":"{ __typename }"}}`, want: []string{
			`{"id":"1","type":"next","payload":{"data":{"__typename":"Query"}}}`, `{"id":"1","type":"complete"}`,
		}},
	}})
}

// TestAnAppSyncEventOverThePayloadLimitIsAnErrorNotAFrame: AppSync drops an
// event larger than its payload limit and says so; the subscription goes on.
func TestAnAppSyncEventOverThePayloadLimitIsAnErrorNotAFrame(t *testing.T) {
	s := newTestServerWith(t, testOptions{maxPayload: 400})
	big := strings.Repeat("x", 700)
	s.run(t, conversation{path: "/graphql?header=" + authHeader(base64.StdEncoding, clientKey) + "&payload=e30", subprotocols: []string{SubprotocolGraphQLWS}, steps: []step{
		{send: `{"type":"connection_init"}`, want: []string{ack, ka}},
		{send: appSyncStart("1", watch, "s1", ""), want: []string{startAck1}},
		{publish: big, want: []string{appSyncErr("1", "PayloadTooLargeException", "an event was larger than 400 bytes and was not sent", 400)}},
		{publish: "hi", want: []string{dataHi}},
	}})
}

// stuck is an executor whose queries aliased "stuck" run until their
// context ends, and say how it ended.
type stuck struct {
	Executor
	ended chan error
	ops   *sync.Map // the operations that get stuck
}

func (s stuck) Prepare(ctx context.Context, params *graphql.RawParams) (*graph.Operation, gqlerror.List) {
	op, errs := s.Executor.Prepare(ctx, params)
	if op != nil && strings.Contains(params.Query, "stuck") {
		s.ops.Store(op, true)
	}
	return op, errs
}

func (s stuck) Execute(ctx context.Context, op *graph.Operation) *graphql.Response {
	if _, ok := s.ops.Load(op); !ok {
		return s.Executor.Execute(ctx, op)
	}
	<-ctx.Done()
	s.ended <- ctx.Err()
	return &graphql.Response{Errors: gqlerror.List{{Message: "ended"}}}
}

// A query in flight runs beside the connection's reader: the client's
// complete, or its leaving, ends the query's work at once, and the
// connection answers meanwhile.
func TestAQueryEndsWhenItsClientStopsItOrLeaves(t *testing.T) {
	ended := make(chan error, 2)
	s := newTestServerWith(t, testOptions{executor: func(e Executor) Executor { return stuck{e, ended, &sync.Map{}} }})
	dial := func() *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{SubprotocolTransportWS}}
		c, _, err := d.Dial("ws"+strings.TrimPrefix(s.http.URL, "http")+"/graphql", nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(c *websocket.Conn, msg string) {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *websocket.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	query := `{"id":"1","type":"subscribe","payload":{"query":"{ stuck: __typename }"}}`
	for _, leave := range []bool{false, true} {
		c := dial()
		write(c, `{"type":"connection_init","payload":{"x-api-key":"`+clientKey+`"}}`)
		if got := read(c); got != `{"type":"connection_ack"}` {
			t.Fatalf("got %s", got)
		}
		write(c, query)
		write(c, `{"type":"ping"}`)
		if got := read(c); got != `{"type":"pong"}` {
			t.Fatalf("while a query runs, a ping got %s", got)
		}
		if leave {
			c.Close()
		} else {
			write(c, `{"id":"1","type":"complete"}`)
		}
		select {
		case err := <-ended:
			if err != context.Canceled {
				t.Fatalf("the query ended with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the query runs on after its client (left: %v)", leave)
		}
		if !leave {
			// Nothing is sent for a query the client stopped.
			write(c, `{"type":"ping"}`)
			if got := read(c); got != `{"type":"pong"}` {
				t.Fatalf("after complete, got %s", got)
			}
			c.Close()
		}
	}
}
