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
// must fail only with this package's codes, must never call an answer
// complete without message_stop, and every part it emits must be whole: a
// text-carrying part has text, a tool part names a call that was opened and
// not yet closed.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(start(`{"input_tokens":1}`) + text("Hel") + text("lo") + messageDelta("end_turn", "2") + messageStop))
	f.Add([]byte(start(`{}`) + text("x") + ev("error", `{"type":"error","error":{"type":"overloaded_error"}}`)))
	f.Add([]byte(start(`{}`) + ev("error", `{"type":"error","error":{"type":"rate_limit_error"}}`)))
	f.Add([]byte(text("cut")))
	f.Add([]byte("data: {\"type\":\"message_stop\"}\n\n"))
	// Agent runs: tool calls, parallel calls, thinking, redaction, citations.
	f.Add([]byte(start(`{"input_tokens":1}`) + textBlockAt(0) + textAt(0, "Let me check.") + blockStopAt(0) +
		toolUseAt(1, "toolu_01", "get_weather") + inputAt(1, `{"city":`) + inputAt(1, `"Paris"}`) + blockStopAt(1) +
		messageDelta("tool_use", "9") + messageStop))
	f.Add([]byte(start(`{}`) + toolUseAt(0, "a", "x") + toolUseAt(1, "b", "y") + inputAt(1, `{}`) + inputAt(0, `{"k":1}`) +
		blockStopAt(0) + blockStopAt(1) + messageDelta("tool_use", "3") + messageStop))
	f.Add([]byte(start(`{}`) + thinkingAt(0) + blockDeltaAt(0, `{"type":"thinking_delta","thinking":"hmm"}`) +
		blockDeltaAt(0, `{"type":"signature_delta","signature":"`+testSignature+`"}`) + blockStopAt(0) +
		blockStartAt(1, `{"type":"redacted_thinking","data":"`+testRedacted+`"}`) + blockStopAt(1) + messageStop))
	f.Add([]byte(start(`{}`) + blockStartAt(0, `{"type":"text","text":"","citations":[]}`) +
		blockDeltaAt(0, `{"type":"citations_delta","citation":{"type":"web_search_result_location","cited_text":"c","url":"https://example.com","title":"t"}}`) +
		textAt(0, "x") + messageStop))
	f.Add([]byte(start(`{}`) + inputAt(3, `{"orphan":true}`) + blockStopAt(3) + toolUseAt(3, "", "x") + messageStop))
	f.Fuzz(func(t *testing.T, body []byte) {
		emitted := 0
		open := map[string]int{}
		_, err := decode(bytes.NewReader(body), func(pt chat.Part) error {
			switch pt.Kind {
			case chat.PartText, chat.PartReasoning, chat.PartSignature:
				if pt.Text == "" {
					t.Fatalf("emitted an empty part of kind %d", pt.Kind)
				}
				emitted += len(pt.Text)
			case chat.PartRedacted:
				if len(pt.Data) == 0 {
					t.Fatal("emitted empty redacted reasoning")
				}
				emitted += len(pt.Data)
			case chat.PartToolStart:
				if pt.CallID == "" {
					t.Fatal("opened a call without an id")
				}
				open[pt.CallID]++
			case chat.PartToolDelta:
				if open[pt.CallID] == 0 || pt.Text == "" {
					t.Fatalf("delta %q of call %q, which is not open", pt.Text, pt.CallID)
				}
				emitted += len(pt.Text)
			case chat.PartToolEnd:
				if open[pt.CallID] == 0 {
					t.Fatalf("closed call %q, which is not open", pt.CallID)
				}
				open[pt.CallID]--
			case chat.PartSource:
				if pt.Source == nil {
					t.Fatal("emitted a source without a source")
				}
			default:
				t.Fatalf("emitted a part of unknown kind %d", pt.Kind)
			}
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
