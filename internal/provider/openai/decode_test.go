package openai

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// partRules checks a Part sequence against the contract: no empty text,
// tool deltas and ends only for a call that is open, no call opened twice
// while open.
type partRules struct {
	open map[string]bool
}

func (r *partRules) check(pt chat.Part) error {
	if r.open == nil {
		r.open = map[string]bool{}
	}
	switch pt.Kind {
	case chat.PartText, chat.PartReasoning:
		if pt.Text == "" {
			return fmt.Errorf("empty text in %+v", pt)
		}
	case chat.PartToolStart:
		if pt.CallID == "" || r.open[pt.CallID] {
			return fmt.Errorf("start of a call without an id or already open: %+v", pt)
		}
		r.open[pt.CallID] = true
	case chat.PartToolDelta:
		if !r.open[pt.CallID] || pt.Text == "" {
			return fmt.Errorf("delta of a call not open, or empty: %+v", pt)
		}
	case chat.PartToolEnd:
		if !r.open[pt.CallID] {
			return fmt.Errorf("end of a call not open: %+v", pt)
		}
		delete(r.open, pt.CallID)
	default:
		return fmt.Errorf("unexpected part %+v", pt)
	}
	return nil
}

// FuzzDecode feeds arbitrary bodies to the chunk decoder: it must not panic,
// must stay within its bound, must keep the Part contract, and must fail
// only with this package's codes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(delta("Hel") + delta("lo") + finish("stop") + usageChunk + done))
	f.Add([]byte(`data: {"choices":null}` + "\n\n" + done))
	f.Add([]byte(delta("x") + `data: {"error":{"message":"boom"}}` + "\n\n"))
	f.Add([]byte("event: error\ndata: nope\n\n"))
	f.Add([]byte(delta("cut")))
	f.Add([]byte(splitCallStream))
	f.Add([]byte(parallelCallStream))
	f.Add([]byte(reasoningStream))
	f.Add([]byte(wholeCallsAtIndexZero))
	f.Add([]byte(toolChunk(start(0, "", "f"), args(0, "{}")) + done))
	f.Fuzz(func(t *testing.T, body []byte) {
		emitted := 0
		var rules partRules
		_, err := decode(bytes.NewReader(body), nil, func(pt chat.Part) error {
			if err := rules.check(pt); err != nil {
				t.Fatal(err)
			}
			emitted += len(pt.Text)
			return nil
		})
		if emitted > len(body) {
			t.Fatalf("emitted %d bytes of text from a %d-byte body", emitted, len(body))
		}
		if err == nil {
			if len(rules.open) > 0 {
				t.Fatalf("the answer ended with calls open: %v", rules.open)
			}
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
