package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file tests AppSync Events (/event/realtime, POST /event) on the
// real server, as Amplify v6's events client uses it.

const serviceKey = "service-key-0123456789"

// eventsUsers is a server with alice, bob and a service.
func eventsUsers(t *testing.T, args ...string) *server {
	return start(t, "", map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA + ",bob:" + keyB, "TOKENCAST_SERVICE_KEYS": "svc:" + serviceKey},
		append(fast, args...)...)
}

// eventsFrame is a server message of AppSync Events.
type eventsFrame struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Event  string `json:"event"`
	Errors []struct {
		ErrorType string `json:"errorType"`
		Message   string `json:"message"`
	} `json:"errors"`
	Successful []json.RawMessage `json:"successful"`
	Failed     []json.RawMessage `json:"failed"`
}

type eventsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

// dialEvents connects as Amplify v6 does: subprotocols aws-appsync-event-ws
// and header-<base64url auth object>, then connection_init.
func dialEvents(t *testing.T, s *server, apiKey string) *eventsClient {
	t.Helper()
	return dialEventsWith(t, s, map[string]string{"host": s.addr, "x-api-key": apiKey})
}

// dialEventsWith connects with the auth object auth.
func dialEventsWith(t *testing.T, s *server, auth map[string]string) *eventsClient {
	t.Helper()
	obj, _ := json.Marshal(auth)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/event/realtime", &websocket.DialOptions{
		Subprotocols: []string{"aws-appsync-event-ws", "header-" + base64.RawURLEncoding.EncodeToString(obj)},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "aws-appsync-event-ws" {
		t.Fatalf("subprotocol %q", got)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	c := &eventsClient{t: t, conn: conn}
	c.send(map[string]any{"type": "connection_init"})
	if m := c.next(); m.Type != "connection_ack" {
		t.Fatalf("got %+v, want connection_ack", m)
	}
	return c
}

func (c *eventsClient) send(v any) {
	c.t.Helper()
	data, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next is the next message other than ka.
func (c *eventsClient) next() eventsFrame {
	c.t.Helper()
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if m.Type != "ka" {
			return m
		}
	}
}

func (c *eventsClient) read() (eventsFrame, error) {
	var m eventsFrame
	return m, readJSON(c.t, c.conn, 10*time.Second, &m)
}

// subscribe subscribes id to a session's channel and waits for its
// subscribe_success (or returns the refusal).
func (c *eventsClient) subscribe(id, session string) eventsFrame {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "id": id, "channel": "/tokencast/sessions/" + session})
	return c.next()
}

// event reads the next data message of subscription id as the typed event.
func (c *eventsClient) event(id string) event {
	c.t.Helper()
	m := c.next()
	if m.Type != "data" || m.ID != id {
		c.t.Fatalf("got %+v, want data for %s", m, id)
	}
	var ev event
	if err := json.Unmarshal([]byte(m.Event), &ev); err != nil {
		c.t.Fatalf("event %q is not a string of JSON: %v", m.Event, err)
	}
	return ev
}

// answer reads subscription id's events until its answer ends.
func (c *eventsClient) answer(id string) []event {
	c.t.Helper()
	var evs []event
	for {
		ev := c.event(id)
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" {
			return evs
		}
	}
}

// publishHTTP is POST /event with an API key and extra headers.
func publishHTTP(t *testing.T, s *server, apiKey string, body any, header http.Header) (int, []byte) {
	t.Helper()
	resp := uiRequest(t, s, http.MethodPost, "/event", apiKey, body, header)
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func TestEventsStreamsTheAnswerAndAServicesPublish(t *testing.T) {
	s := eventsUsers(t, "--demo-token-interval", "40ms")
	alice := dialEvents(t, s, keyA)
	if m := alice.subscribe("1", "ev-a"); m.Type != "subscribe_success" || m.ID != "1" {
		t.Fatalf("subscribe: %+v", m)
	}
	request := s.ask(t, keyA, "ev-a", "hello", "en")
	first := alice.event("1")
	// A second device joins mid-answer: no replay in AppSync Events, but
	// the answer in flight from its START, as a GraphQL subscriber gets it.
	late := dialEvents(t, s, keyA)
	if m := late.subscribe("late", "ev-a"); m.Type != "subscribe_success" {
		t.Fatalf("late subscribe: %+v", m)
	}
	checkAnswer(t, append([]event{first}, alice.answer("1")...), request, demoAnswer("en", "hello"))
	checkAnswer(t, late.answer("late"), request, demoAnswer("en", "hello"))

	// A service publishes over HTTP; both devices receive it.
	status, raw := publishHTTP(t, s, serviceKey, map[string]any{"channel": "/tokencast/sessions/ev-a", "events": []string{`"from the service"`}}, nil)
	var res struct{ Successful, Failed []json.RawMessage }
	if status != http.StatusOK || json.Unmarshal(raw, &res) != nil || len(res.Successful) != 1 || len(res.Failed) != 0 {
		t.Fatalf("publish: HTTP %d %s", status, raw)
	}
	for _, c := range []*eventsClient{alice, late} {
		if ev := c.event(map[*eventsClient]string{alice: "1", late: "late"}[c]); ev.Type != "MESSAGE" || ev.Message != "from the service" {
			t.Fatalf("after the publish: %+v", ev)
		}
	}
	s.waitForMetric(t, `tokencast_connections{protocol="events"} 2`)
}

// AppSync Events is held to the policy of every protocol: who may touch a
// session, who may publish, which pages may connect, how large a frame may
// be.
func TestEventsSecurity(t *testing.T) {
	s := eventsUsers(t, "--ws-read-limit", "4096", "--max-body-bytes", "4096")
	alice := dialEvents(t, s, keyA)
	if m := alice.subscribe("1", "ev-alice"); m.Type != "subscribe_success" {
		t.Fatalf("alice: %+v", m)
	}
	// Bob knows the sessionId: it grants nothing.
	bob := dialEvents(t, s, keyB)
	if m := bob.subscribe("1", "ev-alice"); m.Type != "subscribe_error" || len(m.Errors) != 1 || m.Errors[0].ErrorType != "UnauthorizedException" {
		t.Fatalf("bob subscribing to alice's session: %+v", m)
	}
	bob.send(map[string]any{"type": "subscribe", "id": "2", "channel": "/tokencast/*"})
	if m := bob.next(); m.Type != "subscribe_error" || m.Errors[0].ErrorType != "UnauthorizedException" {
		t.Fatalf("bob's wildcard: %+v", m)
	}
	bob.send(map[string]any{"type": "publish", "id": "p", "channel": "/tokencast/sessions/ev-alice", "events": []string{`"boo"`}})
	if m := bob.next(); m.Type != "publish_error" || m.Errors[0].ErrorType != "UnauthorizedException" {
		t.Fatalf("bob publishing: %+v", m)
	}

	publish := map[string]any{"channel": "/tokencast/sessions/ev-alice", "events": []string{`"x"`}}
	foreign := http.Header{"Origin": {"https://evil.example"}}
	tests := []struct {
		name, key string
		body      any
		header    http.Header
		status    int
		errorType string
	}{
		{"a client publishes", keyB, publish, nil, http.StatusUnauthorized, "UnauthorizedException"},
		{"alice publishes into her own session", keyA, publish, nil, http.StatusUnauthorized, "UnauthorizedException"},
		{"six events", serviceKey, map[string]any{"channel": "/tokencast/sessions/ev-alice", "events": []string{"1", "2", "3", "4", "5", "6"}}, nil, http.StatusBadRequest, "BadRequestException"},
		{"a wildcard", serviceKey, map[string]any{"channel": "/tokencast/sessions/*", "events": []string{"1"}}, nil, http.StatusBadRequest, "BadRequestException"},
		{"events that are not strings", serviceKey, `{"channel":"/tokencast/sessions/ev-alice","events":[{"a":1}]}`, nil, http.StatusBadRequest, "BadRequestException"},
		{"no key", "", publish, nil, http.StatusUnauthorized, chat.CodeUnauthenticated},
		{"a foreign page", serviceKey, publish, foreign, http.StatusForbidden, chat.CodeForbidden},
		{"a body over the limit", serviceKey, map[string]any{"channel": "/tokencast/sessions/ev-alice", "events": []string{`"` + strings.Repeat("x", 5000) + `"`}}, nil, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, raw := publishHTTP(t, s, tt.key, tt.body, tt.header)
			if status != tt.status || !strings.Contains(string(raw), `"`+tt.errorType+`"`) {
				t.Errorf("HTTP %d %s, want %d and %s", status, raw, tt.status, tt.errorType)
			}
		})
	}

	// A foreign page cannot open the WebSocket.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/event/realtime", &websocket.DialOptions{
		Subprotocols: []string{"aws-appsync-event-ws"}, HTTPHeader: foreign,
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a foreign origin: %v %v, want 403", err, resp)
	}
	// A frame over the read limit closes the connection: with 1009, or,
	// when the server closed it before the frame was all written or read,
	// with a reset (the close frame is lost with the unread bytes).
	big := dialEvents(t, s, serviceKey)
	data, _ := json.Marshal(map[string]any{"type": "publish", "id": "p", "channel": "/tokencast/sessions/ev-alice", "events": []string{`"` + strings.Repeat("x", 5000) + `"`}})
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := big.conn.Write(wctx, websocket.MessageText, data); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("writing a frame over the limit: %v, want it written or the connection reset", err)
	}
	for {
		_, err := big.read()
		if err == nil {
			continue // ka
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a frame over the limit: %v, want close 1009", err)
		}
		break
	}
	// None of it reached alice.
	s.ask(t, keyA, "ev-alice", "mine", "en")
	if evs := alice.answer("1"); evs[0].Type != "START" || evs[len(evs)-1].Type != "END" {
		t.Fatalf("alice's answer: %s", types(evs))
	}
	if logs := s.stderr.String(); !strings.Contains(logs, `on="AppSync Events publish"`) {
		t.Errorf("the foreign origin was not logged:\n%s", logs)
	}
}

// A service signs with SigV4, as Amplify's iam mode does: the WebSocket's
// auth object is the headers of a signed POST of {} to /event, an HTTP
// publish is a signed POST /event.
func TestEventsSigV4(t *testing.T) {
	const accessKey, secret = "AKIDTOKENCASTEVENTS", "secret-0123456789-abcdef"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA, "TOKENCAST_SIGV4_KEYS": accessKey + ":" + secret}, fast...)
	alice := dialEvents(t, s, keyA)
	if m := alice.subscribe("1", "ev-sig"); m.Type != "subscribe_success" {
		t.Fatalf("alice: %+v", m)
	}
	signed := func(body string, key string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/event", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		signAppSync(t, req, []byte(body), accessKey, key, time.Now())
		return req
	}
	// Over the socket.
	connect := signed("{}", secret)
	auth := map[string]string{"host": s.addr}
	for k := range connect.Header {
		auth[strings.ToLower(k)] = connect.Header.Get(k)
	}
	svc := dialEventsWith(t, s, auth)
	svc.send(map[string]any{"type": "publish", "id": "p", "channel": "/tokencast/sessions/ev-sig", "events": []string{`"over the socket"`}})
	if m := svc.next(); m.Type != "publish_success" || len(m.Successful) != 1 {
		t.Fatalf("signed publish over the socket: %+v", m)
	}
	// Over HTTP, and with a wrong secret.
	for _, key := range []string{secret, "wrong-secret-0123456789"} {
		resp, err := http.DefaultClient.Do(signed(`{"channel":"/tokencast/sessions/ev-sig","events":["\"over HTTP\""]}`, key))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusUnauthorized
		if key == secret {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("signed HTTP publish (secret %s): HTTP %d %s", key, resp.StatusCode, raw)
		}
	}
	for _, want := range []string{"over the socket", "over HTTP"} {
		if ev := alice.event("1"); ev.Type != "MESSAGE" || ev.Message != want {
			t.Fatalf("alice got %+v, want %q", ev, want)
		}
	}
}
