package graph

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
)

type allowAll struct{}

func (allowAll) Authorize(context.Context, *auth.Principal, string) error { return nil }

// FuzzPrepare feeds arbitrary request bodies through what the GraphQL-over-SSE
// and WebSocket transports do with them: decode a JSON GraphQL request, then
// parse, validate and limit the operation. Nothing may panic, and every
// error a client sees carries a stable extensions.code.
func FuzzPrepare(f *testing.F) {
	for _, seed := range []string{
		`{"query":"subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) { type message cursor } }","variables":{"s":"s-1","a":"42"}}`,
		`{"query":"subscription { onSendMessage(sessionId: \"s\") { usage { inputTokens } error { code } } }"}`,
		`{"query":"subscription { onSendMessage(sessionId: \"bad id!\") { type } }"}`,
		`{"query":"subscription { onSendMessage(sessionId: \"s\", after: \"x\") { type } }"}`,
		`{"query":"subscription { a: onSendMessage(sessionId: \"s\") { type } b: onSendMessage(sessionId: \"t\") { type } }"}`,
		`{"query":"query { models { name } }"}`,
		`{"query":"{ __schema { types { name } } }"}`,
		`{"query":"subscription { ...F } fragment F on Subscription { onSendMessage(sessionId: \"s\") { type } }"}`,
		`{"query":"{","variables":null}`,
		`{"query":"query($i: GetLlmResponseInput!) { getLlmResponse(input: $i) { requestId } }","variables":{"i":7}}`,
		`{"query":"subscription { onSendMessage(sessionId: \"s\") { type } }","operationName":"nope"}`,
		`[]`,
		`{"query":` + `"{ a { a { a { a { a { a { a { a { a { a { a { a } } } } } } } } } } } }"}`,
		`{"query":"{...F2} fragment F0 on Query{__typename} fragment F1 on Query{...F0 ...F0 ...F0} fragment F2 on Query{...F1 ...F1 ...F1}"}`,
		`{"query":"{...C} fragment C on Query{...C}"}`,
		`{"query":"{__typename __typename __typename __typename}"}`,
		`{"query":"{ conversation(sessionId: \"s\", last: 3, before: \"r\") { hasOlder turns { requestId } } }"}`,
	} {
		f.Add([]byte(seed))
	}
	ops := newOps()
	f.Fuzz(func(t *testing.T, body []byte) {
		var params graphql.RawParams
		if err := json.Unmarshal(body, &params); err != nil || params.Query == "" {
			return // the transports answer BAD_USER_INPUT themselves
		}
		ctx := auth.WithPrincipal(context.Background(), auth.DevPrincipal)
		op, errs := ops.Prepare(ctx, &params)
		for _, e := range errs {
			if code, _ := e.Extensions["code"].(string); code == "" {
				t.Fatalf("error without extensions.code for %q: %+v", body, e)
			}
		}
		if len(errs) > 0 {
			if op != nil {
				t.Fatalf("an operation and errors for %q", body)
			}
			return
		}
		if op == nil {
			t.Fatalf("neither an operation nor errors for %q", body)
		}
		if s := op.Subscription; s != nil {
			if !chat.ValidSessionID(s.SessionID) || s.Shape == nil {
				t.Fatalf("subscription prepared with session %q shape %v for %q", s.SessionID, s.Shape, body)
			}
			// Encoding an event with any accepted selection must be valid JSON.
			ev := chat.Event{Type: chat.EventEnd, SessionID: s.SessionID, RequestID: "r", Message: "m\"\u2028", Usage: &chat.Usage{}, Error: &chat.StreamError{Code: "X"}}
			if out := s.Shape.Encode(&ev); !json.Valid(out) {
				t.Fatalf("shape of %q encodes invalid JSON %q", body, out)
			}
		}
	})
}

// FuzzParseCursor checks that a cursor either parses to the position it
// names, printing back the same, or is refused.
func FuzzParseCursor(f *testing.F) {
	for _, seed := range []string{"0", "1", "42", "18446744073709551615", "18446744073709551616", "-1", "+1", "", " 1", "0x10", "1e3", "01"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, err := ParseCursor(s)
		if err != nil {
			return
		}
		if back := Cursor(seq); back != strings.TrimLeft(s, "0") && !(seq == 0 && strings.Trim(s, "0") == "") {
			t.Fatalf("cursor %q read as %d, which prints as %q", s, seq, back)
		}
	})
}
