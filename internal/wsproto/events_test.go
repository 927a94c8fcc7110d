package wsproto

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/events"
)

// eventsHeader is the header-… subprotocol of an auth object.
func eventsHeader(obj map[string]string) string {
	b, _ := json.Marshal(obj)
	return headerSubprotocolPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func eventsKey(key string) []string {
	return []string{SubprotocolEvents, eventsHeader(map[string]string{"host": "example.com", "x-api-key": key})}
}

// eventsMsg is a client message; auth, when set, authorizes it alone.
func eventsMsg(typ, id, channel string, evs []string, auth map[string]string) string {
	m := map[string]any{"type": typ, "id": id, "channel": channel}
	if evs != nil {
		m["events"] = evs
	}
	if auth != nil {
		m["authorization"] = auth
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func eventsErr(typ, id, errorType, message string) string {
	m := map[string]any{"type": typ, "errors": []any{map[string]any{"errorType": errorType, "message": message}}}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

const (
	eventsAck     = `{"type":"connection_ack","connectionTimeoutMs":300000}`
	eventsS1      = "/tokencast/sessions/s1"
	subscribedOne = `{"type":"subscribe_success","id":"1"}`
)

// signedAuth is the auth object Amplify makes for IAM: the headers of a
// POST of body to https://example.com/event, signed with SigV4.
func signedAuth(t *testing.T, body string) map[string]string {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "https://example.com/event", strings.NewReader(body))
	r.Header.Set("accept", "application/json, text/javascript")
	r.Header.Set("content-type", "application/json; charset=UTF-8")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: "AKIDEVENTS", SecretAccessKey: "events-secret-0123456789"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "appsync", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	obj := map[string]string{"host": "example.com"}
	for k := range r.Header {
		obj[strings.ToLower(k)] = r.Header.Get(k)
	}
	return obj
}

func TestEventsConformance(t *testing.T) {
	sigv4, err := auth.ParseSigV4Keys("AKIDEVENTS:events-secret-0123456789", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServerWith(t, testOptions{sigv4: sigv4})
	const unauthorized = "You are not authorized to make this call."
	alice, service := eventsKey(clientKey), eventsKey(serviceKey)
	init := step{send: init_, want: []string{eventsAck, ka}}
	hi := step{publish: "hi", want: []string{`{"type":"data","id":"1","event":{"sessionId":"s1","message":"hi","type":"MESSAGE","requestId":null,"locale":"en"}}`}}
	published := `{"type":"publish_success","id":"p","successful":[{"identifier":"*","index":0}],"failed":[]}`
	cases := []conversation{
		{name: "handshake: connection_ack with connectionTimeoutMs, then ka", path: "/event/realtime", subprotocols: alice,
			steps: []step{init}},
		{name: "subscribe, receive an event as a string of JSON, unsubscribe", path: "/event/realtime", subprotocols: alice, steps: []step{
			init,
			{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{subscribedOne}},
			hi,
			{send: `{"type":"unsubscribe","id":"1"}`, want: []string{`{"type":"unsubscribe_success","id":"1"}`}},
			{send: `{"type":"unsubscribe","id":"1"}`, want: []string{eventsErr("unsubscribe_error", "1", "BadRequestException", `no subscription has id "1"`)}},
		}},
		{name: "the channel as events.connect sends it, without its leading slash", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("subscribe", "1", "tokencast/sessions/s1", nil, nil), want: []string{subscribedOne}}, hi,
		}},
		{name: "a wildcard after a session is that session", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("subscribe", "1", eventsS1+"/*", nil, nil), want: []string{subscribedOne}}, hi,
		}},
		{name: "a wildcard over sessions is refused", path: "/event/realtime", subprotocols: alice, steps: []step{
			init,
			{send: eventsMsg("subscribe", "1", "/tokencast/sessions/*", nil, nil), want: []string{eventsErr("subscribe_error", "1", "UnauthorizedException", events.ErrWildcard.Error())}},
			{send: eventsMsg("subscribe", "2", "/*", nil, nil), want: []string{eventsErr("subscribe_error", "2", "UnauthorizedException", events.ErrWildcard.Error())}},
		}},
		{name: "a channel that is not a session's", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("subscribe", "1", "/default/chat", nil, nil), want: []string{eventsErr("subscribe_error", "1", "BadRequestException", events.ErrBadChannel.Error())}},
		}},
		{name: "no credentials: connection_error, then close", path: "/event/realtime", subprotocols: []string{SubprotocolEvents},
			steps: []step{{send: init_, want: []string{eventsErr("connection_error", "", "UnauthorizedException", unauthorized)}}}, close: 4403},
		{name: "a wrong key: connection_error, then close", path: "/event/realtime", subprotocols: eventsKey(wrongKey),
			steps: []step{{send: init_, want: []string{eventsErr("connection_error", "", "UnauthorizedException", unauthorized)}}}, close: 4403},
		{name: "a malformed header- auth object", path: "/event/realtime", subprotocols: []string{SubprotocolEvents, "header-!!"},
			steps: []step{{send: init_, want: []string{eventsErr("connection_error", "", "BadRequestException", errAuthObject.Error())}}}, close: 4403},
		{name: "a subscribe with a wrong key of its own", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("subscribe", "1", eventsS1, nil, map[string]string{"x-api-key": wrongKey}), want: []string{eventsErr("subscribe_error", "1", "UnauthorizedException", unauthorized)}},
		}},
		{name: "subscribe before connection_init", path: "/event/realtime", subprotocols: alice, steps: []step{
			{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{eventsErr("subscribe_error", "1", "UnauthorizedException", "send connection_init first")}},
		}},
		{name: "a duplicate id, then the cap", path: "/event/realtime", subprotocols: alice, steps: []step{
			init,
			{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{subscribedOne}},
			{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{eventsErr("subscribe_error", "1", "DuplicatedOperationError", `a subscription with id "1" is already running`)}},
			{send: eventsMsg("subscribe", "2", eventsS1, nil, nil), want: []string{`{"type":"subscribe_success","id":"2"}`}},
			{send: eventsMsg("subscribe", "3", eventsS1, nil, nil), want: []string{eventsErr("subscribe_error", "3", "MaxSubscriptionsReachedError", "this connection has 2 subscriptions, the most it may have")}},
		}},
		{name: "a client may not publish", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("publish", "p", eventsS1, []string{`"hi"`}, nil), want: []string{eventsErr("publish_error", "p", "UnauthorizedException", "publishing into a session needs a service key")}},
		}},
		{name: "a service publishes; events a string or {message, locale}; bad ones fail alone", path: "/event/realtime", subprotocols: service, steps: []step{
			init,
			{send: eventsMsg("publish", "p", eventsS1, []string{`"hi"`}, nil), want: []string{published}},
			{send: eventsMsg("publish", "p", eventsS1, []string{`{"message":"hé","locale":"fr"}`, `{nope`, `42`}, nil), want: []string{
				`{"type":"publish_success","id":"p","successful":[{"identifier":"*","index":0}],"failed":[` +
					`{"identifier":"*","index":1,"code":400,"message":"an event is a JSON string (the message) or {\"message\": \"…\", \"locale\": \"…\"}"},` +
					`{"identifier":"*","index":2,"code":400,"message":"an event is a JSON string (the message) or {\"message\": \"…\", \"locale\": \"…\"}"}]}`}},
			{send: eventsMsg("publish", "p", eventsS1, []string{`"` + strings.Repeat("x", 1100) + `"`}, nil), want: []string{
				`{"type":"publish_success","id":"p","successful":[],"failed":[{"identifier":"*","index":0,"code":413,"message":"MESSAGE_TOO_LARGE: message is larger than the server accepts"}]}`}},
			{send: eventsMsg("publish", "p", eventsS1, []string{`"` + strings.Repeat("x", events.MaxEventBytes) + `"`}, nil), want: []string{
				`{"type":"publish_success","id":"p","successful":[],"failed":[{"identifier":"*","index":0,"code":413,"message":"the event is larger than 245760 bytes"}]}`}},
		}},
		{name: "a publish of more than 5 events, or none, or to a wildcard", path: "/event/realtime", subprotocols: service, steps: []step{
			init,
			{send: eventsMsg("publish", "p", eventsS1, []string{`1`, `2`, `3`, `4`, `5`, `6`}, nil), want: []string{eventsErr("publish_error", "p", "BadRequestException", "a publish carries at most 5 events, this one 6")}},
			{send: eventsMsg("publish", "p", eventsS1, []string{}, nil), want: []string{eventsErr("publish_error", "p", "BadRequestException", "a publish carries 1 to 5 events")}},
			{send: eventsMsg("publish", "p", eventsS1+"/*", []string{`"x"`}, nil), want: []string{eventsErr("publish_error", "p", "BadRequestException", events.ErrPublishWildcard.Error())}},
		}},
		{name: "a client's publish authorized by a service key of its own", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: eventsMsg("publish", "p", eventsS1, []string{`"hi"`}, map[string]string{"x-api-key": serviceKey}), want: []string{published}},
		}},
		{name: "SigV4: the connection and a publish signed as Amplify signs them", path: "/event/realtime",
			subprotocols: []string{SubprotocolEvents, eventsHeader(signedAuth(t, "{}"))}, steps: []step{
				init,
				{send: eventsMsg("publish", "p", eventsS1, []string{`"hi"`}, signedAuth(t, `{"channel":"`+eventsS1+`","events":["\"hi\""]}`)), want: []string{published}},
				{send: eventsMsg("publish", "p", eventsS1, []string{`"hi"`}, signedAuth(t, `{"channel":"/tokencast/sessions/other","events":["\"hi\""]}`)),
					want: []string{eventsErr("publish_error", "p", "UnauthorizedException", unauthorized)}},
			}},
		{name: "SigV4 with a signature over another body is refused", path: "/event/realtime",
			subprotocols: []string{SubprotocolEvents, eventsHeader(signedAuth(t, `{"x":1}`))},
			steps:        []step{{send: init_, want: []string{eventsErr("connection_error", "", "UnauthorizedException", unauthorized)}}}, close: 4403},
		{name: "an unknown message type", path: "/event/realtime", subprotocols: alice, steps: []step{
			init, {send: `{"type":"bogus","id":"7"}`, want: []string{eventsErr("error", "7", "UnsupportedOperation", `unsupported message type "bogus"`)}},
		}},
		{name: "invalid JSON, and events that are not strings", path: "/event/realtime", subprotocols: service, steps: []step{
			{send: `{not json`, want: []string{eventsErr("error", "", "BadRequestException", events.ErrInvalidMessage.Error())}},
			init,
			{send: `{"type":"publish","id":"p","channel":"/tokencast/sessions/s1","events":[{"a":1}]}`, want: []string{eventsErr("publish_error", "p", "BadRequestException", events.ErrInvalidMessage.Error())}},
		}},
		{name: "a frame over the read limit closes the connection", path: "/event/realtime", subprotocols: service, steps: []step{
			init, {send: eventsMsg("publish", "p", eventsS1, []string{`"` + strings.Repeat("x", 300<<10) + `"`}, nil)},
		}, close: 1009},
		{name: "no connection_init in time", path: "/event/realtime", subprotocols: alice, close: 4408},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { s.run(t, c) })
	}
}

// TestEventsSessionsBelongToPrincipals: knowing a sessionId grants nothing;
// bob is refused alice's session.
func TestEventsSessionsBelongToPrincipals(t *testing.T) {
	s := newTestServer(t)
	s.run(t, conversation{name: "alice claims s1", path: "/event/realtime", subprotocols: eventsKey(clientKey), steps: []step{
		{send: init_, want: []string{eventsAck, ka}},
		{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{subscribedOne}},
	}})
	s.run(t, conversation{name: "bob is refused it", path: "/event/realtime", subprotocols: eventsKey(otherKey), steps: []step{
		{send: init_, want: []string{eventsAck, ka}},
		{send: eventsMsg("subscribe", "1", eventsS1, nil, nil), want: []string{eventsErr("subscribe_error", "1", "UnauthorizedException", "You are not authorized to make this call.")}},
		{send: eventsMsg("subscribe", "2", eventsS1, nil, map[string]string{"x-api-key": otherKey}), want: []string{eventsErr("subscribe_error", "2", "UnauthorizedException", "You are not authorized to make this call.")}},
	}})
}

// An event goes out as a string of its JSON; one over the payload limit is
// a broadcast_error in its place, never a frame the client cannot take.
func TestEventsFrame(t *testing.T) {
	d := eventsWS{maxPayload: 64}
	data := []byte(eventsDataPrefix + `{"message":"\"é\"\n<ok>","type":"DELTA"}}`)
	var got struct {
		Type, ID, Event string
	}
	if err := json.Unmarshal(d.frame("s-1", data), &got); err != nil {
		t.Fatal(err)
	}
	var ev map[string]string
	if err := json.Unmarshal([]byte(got.Event), &ev); err != nil || got.Type != "data" || got.ID != "s-1" || ev["message"] != "\"é\"\n<ok>" || ev["type"] != "DELTA" {
		t.Fatalf("frame %+v, event %v (%v)", got, ev, err)
	}
	big := []byte(eventsDataPrefix + `{"message":"` + strings.Repeat("x", 64) + `"}}`)
	want := eventsErr("broadcast_error", "s-1", "PayloadTooLargeException", "an event was larger than 64 bytes and was not sent")
	if !sameJSON(t, d.frame("s-1", big), []byte(want)) {
		t.Fatalf("an event over the limit: %s, want %s", d.frame("s-1", big), want)
	}
}
