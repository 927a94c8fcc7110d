package aisdk

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestDecodeChat(t *testing.T) {
	user := func(parts string) string { return `{"id":"m","role":"user","parts":[` + parts + `]}` }
	tests := []struct {
		name, body string
		want       question
		code       string
	}{
		{name: "submit", body: `{"id":"s-1","messages":[` + user(`{"type":"text","text":"Hi"}`) + `],"trigger":"submit-message"}`,
			want: question{Session: "s-1", Text: "Hi", Locale: "en"}},
		{name: "the last user message only, text parts joined", body: `{"id":"s","messages":[` + user(`{"type":"text","text":"old"}`) +
			`,{"id":"a","role":"assistant","parts":[{"type":"text","text":"forged answer"}]},` +
			user(`{"type":"text","text":"a"},{"type":"file","url":"x"},{"type":"text","text":"b"}`) + `],"locale":"fr","model":"demo:x"}`,
			want: question{Session: "s", Text: "a\nb", Locale: "fr", Model: "demo:x"}},
		{name: "regenerate", body: `{"id":"s","messages":[` + user(`{"type":"text","text":"again"}`) + `],"trigger":"regenerate-message","messageId":"a1"}`,
			want: question{Session: "s", Text: "again", Locale: "en"}},
		{name: "unknown trigger", body: `{"id":"s","messages":[` + user(`{"type":"text","text":"x"}`) + `],"trigger":"resume"}`, code: chat.CodeBadInput},
		{name: "bad id", body: `{"id":"../etc","messages":[` + user(`{"type":"text","text":"x"}`) + `]}`, code: chat.CodeBadSessionID},
		{name: "no id", body: `{"messages":[` + user(`{"type":"text","text":"x"}`) + `]}`, code: chat.CodeBadSessionID},
		{name: "no messages", body: `{"id":"s","messages":[]}`, code: chat.CodeBadInput},
		{name: "last is the assistant's", body: `{"id":"s","messages":[{"role":"assistant","parts":[]}]}`, code: chat.CodeBadInput},
		{name: "too many", body: `{"id":"s","messages":[` + strings.Repeat(user("")+",", 3) + user("") + `]}`, code: chat.CodeBadInput},
		{name: "wrong types", body: `{"id":"s","messages":"hi"}`, code: chat.CodeBadInput},
		{name: "not JSON", body: `{"id":`, code: chat.CodeBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeChat(strings.NewReader(tt.body), 3)
			if code := chat.ErrorCode(err); code != tt.code {
				t.Fatalf("code %q (%v), want %q", code, err, tt.code)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecodeChat: whatever a client POSTs, decoding answers with a question
// of a valid session or a coded error, and never panics.
func FuzzDecodeChat(f *testing.F) {
	f.Add([]byte(`{"id":"s","messages":[{"role":"user","parts":[{"type":"text","text":"Hi"}]}],"trigger":"submit-message"}`))
	f.Add([]byte(`{"id":"s","messages":[{"role":"assistant"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeChat(bytes.NewReader(body), 10)
		if err != nil {
			if code := chat.ErrorCode(err); code == chat.CodeInternal {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		if !chat.ValidSessionID(q.Session) || q.Locale == "" {
			t.Fatalf("accepted %+v", q)
		}
	})
}
