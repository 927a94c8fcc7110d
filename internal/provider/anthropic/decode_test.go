package anthropic

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

func TestDecodeRefusesOversizedEvents(t *testing.T) {
	_, err := decode(strings.NewReader("data: "+strings.Repeat("x", upstream.MaxEventBytes+1)+"\n\n"), func(chat.Part) error { return nil })
	var public *chat.Error
	if !errors.As(err, &public) || public.Code != chat.CodeProvider {
		t.Fatalf("oversized event: err = %v, want %s", err, chat.CodeProvider)
	}
}

// FuzzDecode feeds arbitrary bodies to the event decoder: it must not panic,
// must fail only with this package's codes, and must never call an answer
// complete without message_stop.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(start(`{"input_tokens":1}`) + text("Hel") + text("lo") + messageDelta("end_turn", "2") + messageStop))
	f.Add([]byte(start(`{}`) + text("x") + ev("error", `{"type":"error","error":{"type":"overloaded_error"}}`)))
	f.Add([]byte(start(`{}`) + ev("error", `{"type":"error","error":{"type":"rate_limit_error"}}`)))
	f.Add([]byte(text("cut")))
	f.Add([]byte("data: {\"type\":\"message_stop\"}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		emitted := 0
		_, err := decode(bytes.NewReader(body), func(pt chat.Part) error {
			text := pt.Text
			if text == "" {
				t.Fatal("emitted an empty delta")
			}
			emitted += len(text)
			return nil
		})
		if emitted > len(body) {
			t.Fatalf("emitted %d bytes of text from a %d-byte body", emitted, len(body))
		}
		if err == nil {
			if !bytes.Contains(body, []byte("message_stop")) && !bytes.Contains(body, []byte(`\u`)) {
				t.Fatalf("complete without message_stop: %q", body)
			}
			return
		}
		var public *chat.Error
		if !errors.As(err, &public) {
			t.Fatalf("error %v carries no *chat.Error", err)
		}
		switch public.Code {
		case chat.CodeProvider, upstream.CodeIncomplete, upstream.CodeUnavailable, upstream.CodeThrottled:
		default:
			t.Fatalf("unexpected code %q from a stream body", public.Code)
		}
	})
}
