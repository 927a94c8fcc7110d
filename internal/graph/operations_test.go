package graph

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tokencast/tokencast/internal/chat"
)

func newOps() *Operations {
	es := NewExecutableSchema(Config{Resolvers: &Resolver{}})
	return NewOperations(es, Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200, MaxFields: 500}, allowAll{}, slog.New(slog.DiscardHandler))
}

var endEvent = chat.Event{
	Type: chat.EventEnd, SessionID: "s-1", RequestID: "r-1", Index: 7, Message: chat.MarkerEnd,
	Locale: "en", TimeStamp: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), Seq: 42,
	Usage: &chat.Usage{InputTokens: 3, OutputTokens: 5, TotalTokens: 8}, StopReason: "end_turn",
	Model: "demo:default", TTFTMillis: 120,
}

func TestShapeEncodesWhatTheQuerySelects(t *testing.T) {
	ops := newOps()
	cases := []struct {
		name, query string
		vars        map[string]any
		ev          chat.Event
		want        string
	}{
		{"the sample's selection", `subscription { onSendMessage(sessionId: "s-1") { sessionId message locale timeStamp } }`, nil, endEvent,
			`{"onSendMessage":{"sessionId":"s-1","message":"#END_STREAM#","locale":"en","timeStamp":"2026-11-25T10:00:00.123Z"}}`},
		{"aliases, typename and nested objects", `subscription S($s: String!) { ev: onSendMessage(sessionId: $s) { __typename t: type index cursor usage { total: totalTokens __typename } error { code } ttftMs } }`,
			map[string]any{"s": "s-1"}, endEvent,
			`{"ev":{"__typename":"SendMessageResponse","t":"END","index":7,"cursor":"42","usage":{"total":8,"__typename":"Usage"},"error":null,"ttftMs":120}}`},
		{"fragments and directives", `subscription($s: String!, $no: Boolean!) { onSendMessage(sessionId: $s) { ...F model @skip(if: $no) stopReason @include(if: $no) } } fragment F on SendMessageResponse { requestId }`,
			map[string]any{"s": "s-1", "no": true}, endEvent,
			`{"onSendMessage":{"requestId":"r-1","stopReason":"end_turn"}}`},
		{"a service message has no index nor request", `subscription { onSendMessage(sessionId: "s-1") { message type index requestId usage { totalTokens } ttftMs } }`, nil,
			chat.Event{Type: chat.EventMessage, SessionID: "s-1", Message: "line\n\"quoted\" \u0001 ünïcode", TimeStamp: endEvent.TimeStamp},
			`{"onSendMessage":{"message":"line\n\"quoted\" \u0001 ünïcode","type":"MESSAGE","index":null,"requestId":null,"usage":null,"ttftMs":null}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op, errs := ops.Prepare(context.Background(), &graphql.RawParams{Query: tc.query, Variables: tc.vars})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			got := op.Subscription.Shape.Encode(&tc.ev)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
			var g, w any
			_ = json.Unmarshal(got, &g)
			_ = json.Unmarshal([]byte(tc.want), &w)
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestIdenticalSelectionsShareOneShape(t *testing.T) {
	ops := newOps()
	q := `subscription($s: String!) { onSendMessage(sessionId: $s) { message type } }`
	a, _ := ops.Prepare(context.Background(), &graphql.RawParams{Query: q, Variables: map[string]any{"s": "a"}})
	b, _ := ops.Prepare(context.Background(), &graphql.RawParams{Query: q, Variables: map[string]any{"s": "b"}})
	c, _ := ops.Prepare(context.Background(), &graphql.RawParams{Query: `subscription { onSendMessage(sessionId: "c") { type } }`})
	if a.Subscription.Shape != b.Subscription.Shape || a.Subscription.Shape == c.Subscription.Shape {
		t.Fatal("shapes are not shared by identical selections only")
	}
}

func BenchmarkShapeEncode(b *testing.B) {
	ops := newOps()
	op, _ := ops.Prepare(context.Background(), &graphql.RawParams{Query: `subscription { onSendMessage(sessionId: "s-1") {
		sessionId message locale timeStamp type requestId index cursor stopReason model usage { inputTokens outputTokens totalTokens } error { code message } } }`})
	ev := endEvent
	ev.Type, ev.Message, ev.Usage = chat.EventDelta, "Hello, this is a token or two ", nil
	b.ReportAllocs()
	for b.Loop() {
		_ = op.Subscription.Shape.Encode(&ev)
	}
}
