package openai

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// FuzzDecode feeds arbitrary bodies to the chunk decoder: it must not panic,
// must stay within its bound, and must fail only with this package's codes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(delta("Hel") + delta("lo") + finish("stop") + usageChunk + done))
	f.Add([]byte(`data: {"choices":null}` + "\n\n" + done))
	f.Add([]byte(delta("x") + `data: {"error":{"message":"boom"}}` + "\n\n"))
	f.Add([]byte("event: error\ndata: nope\n\n"))
	f.Add([]byte(delta("cut")))
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
			return
		}
		var public *chat.Error
		if !errors.As(err, &public) {
			t.Fatalf("error %v carries no *chat.Error", err)
		}
		switch public.Code {
		case chat.CodeProvider, upstream.CodeIncomplete:
		default:
			t.Fatalf("unexpected code %q from a stream body", public.Code)
		}
	})
}
