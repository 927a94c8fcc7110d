package openai

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tokencast/tokencast/internal/chat"
)

func readAll(r *sseReader) ([]sseEvent, error) {
	var out []sseEvent
	for {
		ev, err := r.next()
		if err != nil {
			return out, err
		}
		out = append(out, sseEvent{name: ev.name, data: bytes.Clone(ev.data)})
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []sseEvent
	}{
		{"one event", "event: a\ndata: x\n\n", []sseEvent{{"a", []byte("x")}}},
		{"data lines join with LF", "data: x\ndata:y\ndata\n\n", []sseEvent{{"", []byte("x\ny\n")}}},
		{"CRLF", "event: e\r\ndata: x\r\n\r\n", []sseEvent{{"e", []byte("x")}}},
		{"comments and unknown fields", ": hi\nid: 3\nretry: 10\nfoo: bar\ndata: x\n\n", []sseEvent{{"", []byte("x")}}},
		{"event name resets after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []sseEvent{{"a", []byte("1")}, {"", []byte("2")}}},
		{"no data, no event", "event: a\n\n\n\ndata: 2\n\n", []sseEvent{{"", []byte("2")}}},
		{"only one space is stripped", "data:  x\n\n", []sseEvent{{"", []byte(" x")}}},
		{"last complete line without blank line", "data: x\n", []sseEvent{{"", []byte("x")}}},
		{"cut-off last line is dropped", "data: x\n\ndata: partial", []sseEvent{{"", []byte("x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time also exercises lines split across reads.
			got, err := readAll(newSSEReader(iotest.OneByteReader(strings.NewReader(tt.in)), 64))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want io.EOF", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i].name != tt.want[i].name || !bytes.Equal(got[i].data, tt.want[i].data) {
					t.Errorf("event %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSSEReaderBounds(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"a line longer than the bound", "data: " + strings.Repeat("x", 5000) + "\n\n"},
		{"a line without end longer than the bound", ": " + strings.Repeat("x", 5000)},
		{"an event whose lines add up past the bound", strings.Repeat("data: "+strings.Repeat("x", 100)+"\n", 20) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(newSSEReader(strings.NewReader(tt.in), 1000))
			if !errors.Is(err, errEventTooLarge) {
				t.Fatalf("err = %v, want errEventTooLarge", err)
			}
		})
	}
	// The same bound allows an event just under it.
	in := "data: " + strings.Repeat("x", 1000) + "\n\n"
	got, err := readAll(newSSEReader(strings.NewReader(in), 1000))
	if !errors.Is(err, io.EOF) || len(got) != 1 || len(got[0].data) != 1000 {
		t.Fatalf("events %d, err %v: an event of exactly the bound was refused", len(got), err)
	}
}

// FuzzSSEReader checks that any event the reader is given in the wire format
// comes back as written, after any prefix of junk that ends an event.
func FuzzSSEReader(f *testing.F) {
	f.Add("message", "hello\nworld", true)
	f.Add("", "", false)
	f.Add("a:b", " leading space", true)
	f.Add("error", `{"error":{"message":"x"}}`, false)
	f.Fuzz(func(t *testing.T, name, data string, crlf bool) {
		if strings.ContainsAny(name, "\r\n") || strings.Contains(data, "\r") || len(data) > 4000 {
			t.Skip("not representable in one event")
		}
		eol := "\n"
		if crlf {
			eol = "\r\n"
		}
		var wire strings.Builder
		wire.WriteString(": comment" + eol)
		for range 2 {
			wire.WriteString("event: " + name + eol)
			for line := range strings.SplitSeq(data, "\n") {
				wire.WriteString("data: " + line + eol)
			}
			wire.WriteString(eol)
		}
		got, err := readAll(newSSEReader(strings.NewReader(wire.String()), 8192))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v", err)
		}
		if len(got) != 2 {
			t.Fatalf("%d events from %q", len(got), wire.String())
		}
		for _, ev := range got {
			if ev.name != name || string(ev.data) != data {
				t.Fatalf("event (%q, %q), want (%q, %q)", ev.name, ev.data, name, data)
			}
		}
	})
}

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
		_, err := decode(bytes.NewReader(body), func(text string) error {
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
		case chat.CodeProvider, CodeIncomplete:
		default:
			t.Fatalf("unexpected code %q from a stream body", public.Code)
		}
	})
}
