package agui

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestDecodeRun(t *testing.T) {
	user := `{"id":"m","role":"user","content":"Hi"}`
	tests := []struct {
		name, body string
		want       run
		code       string
	}{
		{name: "a question", body: `{"threadId":"t-1","runId":"r-1","messages":[` + user + `],"tools":[],"context":[],"state":{},"forwardedProps":{}}`,
			want: run{Thread: "t-1", RunID: "r-1", Asks: true, Question: "Hi", Locale: "en"}},
		{name: "content parts, forwarded locale and model", body: `{"threadId":"t","runId":"r","messages":[{"role":"assistant","content":"forged"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}],"forwardedProps":{"locale":"de","model":"demo:x"}}`,
			want: run{Thread: "t", RunID: "r", Asks: true, Question: "a\nb", Locale: "de", Model: "demo:x"}},
		{name: "resume", body: `{"threadId":"t","runId":"r2","messages":[{"role":"assistant","content":"x"}],"resume":[{"interruptId":"r1:17:call:1","status":"resolved","payload":{"approved":false,"reason":"no"}},{"interruptId":"r1:18:c2","status":"cancelled"},{"interruptId":"r1:19:c3","status":"resolved"}]}`,
			want: run{Thread: "t", RunID: "r2", Locale: "en", Answers: []approvalAnswer{
				{Interrupt: Interrupt{Request: "r1", Seq: 17, Call: "call:1"}, Reason: "no"},
				{Interrupt: Interrupt{Request: "r1", Seq: 18, Call: "c2"}},
				{Interrupt: Interrupt{Request: "r1", Seq: 19, Call: "c3"}, Approved: true}}}},
		{name: "an interrupt we never sent", body: `{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"x","status":"resolved"}]}`, code: chat.CodeBadInput},
		{name: "a bad resume status", body: `{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"r:1:c","status":"maybe"}]}`, code: chat.CodeBadInput},
		{name: "too many resume entries", body: `{"threadId":"t","runId":"r","messages":[],"resume":[` + strings.Repeat(`{"interruptId":"r:1:c","status":"resolved"},`, 16) + `{"interruptId":"r:1:c","status":"resolved"}]}`, code: chat.CodeBadInput},
		{name: "a reason too long", body: `{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"r:1:c","status":"cancelled","payload":{"reason":"` + strings.Repeat("x", 1001) + `"}}]}`, code: chat.CodeBadInput},
		{name: "no thread", body: `{"runId":"r","messages":[` + user + `]}`, code: chat.CodeBadSessionID},
		{name: "a bad run id", body: `{"threadId":"t","runId":"r/1","messages":[` + user + `]}`, code: chat.CodeBadRequestID},
		{name: "last is not the user's: asks nothing", body: `{"threadId":"t","runId":"r","messages":[{"role":"assistant","content":"x"}]}`,
			want: run{Thread: "t", RunID: "r", Locale: "en"}},
		{name: "no messages: asks nothing", body: `{"threadId":"t","runId":"r","messages":[]}`, want: run{Thread: "t", RunID: "r", Locale: "en"}},
		{name: "content of another shape", body: `{"threadId":"t","runId":"r","messages":[{"role":"user","content":7}]}`, code: chat.CodeBadInput},
		{name: "too many messages", body: `{"threadId":"t","runId":"r","messages":[` + strings.Repeat(user+",", 3) + user + `]}`, code: chat.CodeBadInput},
		{name: "not JSON", body: `{"threadId"`, code: chat.CodeBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRun(strings.NewReader(tt.body), "", 3)
			if code := chat.ErrorCode(err); code != tt.code {
				t.Fatalf("code %q (%v), want %q", code, err, tt.code)
			}
			if err != nil {
				return
			}
			if got.Thread != tt.want.Thread || got.RunID != tt.want.RunID || got.Question != tt.want.Question || got.Asks != tt.want.Asks || got.Locale != tt.want.Locale ||
				got.Model != tt.want.Model || len(got.Answers) != len(tt.want.Answers) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got.Answers {
				if got.Answers[i] != tt.want.Answers[i] {
					t.Errorf("answer %d: %+v, want %+v", i, got.Answers[i], tt.want.Answers[i])
				}
			}
		})
	}
}

// FuzzDecodeRun: whatever a client POSTs, decoding answers with a run of a
// valid thread and run id, whose interrupts name a valid request, or with a
// coded error; it never panics.
func FuzzDecodeRun(f *testing.F) {
	f.Add([]byte(`{"threadId":"t","runId":"r","messages":[{"id":"m","role":"user","content":"Hi"}]}`))
	f.Add([]byte(`{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"r:1:c","status":"resolved","payload":{"approved":true}}]}`))
	f.Add([]byte(`{"threadId":"t","runId":"r","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeRun(bytes.NewReader(body), "", 10)
		if err != nil {
			if chat.ErrorCode(err) == chat.CodeInternal {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		if !chat.ValidSessionID(r.Thread) || !chat.ValidRequestID(r.RunID) {
			t.Fatalf("accepted %+v", r)
		}
		for _, a := range r.Answers {
			if back, ok := parseInterruptID(a.ID()); !ok || back != a.Interrupt {
				t.Fatalf("interrupt %+v does not round-trip", a.Interrupt)
			}
		}
	})
}

// The last event id comes from Last-Event-ID or, in its place,
// forwardedProps.lastEventId (a string or a number); a run that carries one
// re-attaches and never asks, even when its last message is the user's.
func TestDecodeRunLastEventID(t *testing.T) {
	body := func(props string) string {
		return `{"threadId":"t","runId":"r","messages":[{"id":"m","role":"user","content":"Hi"}],"forwardedProps":` + props + `}`
	}
	tests := []struct {
		name, header, body string
		want               uint64 // 0: none
		code               string
	}{
		{name: "none", body: body(`{}`)},
		{name: "header", header: "42", body: body(`{}`), want: 42},
		{name: "forwarded string", body: body(`{"lastEventId":"7"}`), want: 7},
		{name: "forwarded number over the header", header: "42", body: body(`{"lastEventId":8}`), want: 8},
		{name: "forwarded null", header: "42", body: body(`{"lastEventId":null}`), want: 42},
		{name: "not a position", header: "abc", body: body(`{}`), code: chat.CodeBadCursor},
		{name: "zero", body: body(`{"lastEventId":"0"}`), code: chat.CodeBadCursor},
		{name: "negative", body: body(`{"lastEventId":-3}`), code: chat.CodeBadCursor},
		{name: "an object", body: body(`{"lastEventId":{}}`), code: chat.CodeBadCursor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRun(strings.NewReader(tt.body), tt.header, 3)
			if code := chat.ErrorCode(err); code != tt.code {
				t.Fatalf("code %q (%v), want %q", code, err, tt.code)
			}
			if err != nil {
				return
			}
			if tt.want == 0 {
				if got.After != nil || !got.Asks {
					t.Fatalf("got %+v, want a question and no last event", got)
				}
				return
			}
			if got.After == nil || *got.After != tt.want || got.Asks {
				t.Fatalf("got %+v, want a re-attach after %d", got, tt.want)
			}
		})
	}
}
