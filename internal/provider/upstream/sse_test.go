package upstream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(r *SSEReader) ([]SSEEvent, error) {
	var out []SSEEvent
	for {
		ev, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, SSEEvent{Name: ev.Name, Data: bytes.Clone(ev.Data)})
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []SSEEvent
	}{
		{"one event", "event: a\ndata: x\n\n", []SSEEvent{{"a", []byte("x")}}},
		{"data lines join with LF", "data: x\ndata:y\ndata\n\n", []SSEEvent{{"", []byte("x\ny\n")}}},
		{"CRLF", "event: e\r\ndata: x\r\n\r\n", []SSEEvent{{"e", []byte("x")}}},
		{"comments and unknown fields", ": hi\nid: 3\nretry: 10\nfoo: bar\ndata: x\n\n", []SSEEvent{{"", []byte("x")}}},
		{"event name resets after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []SSEEvent{{"a", []byte("1")}, {"", []byte("2")}}},
		{"no data, no event", "event: a\n\n\n\ndata: 2\n\n", []SSEEvent{{"", []byte("2")}}},
		{"only one space is stripped", "data:  x\n\n", []SSEEvent{{"", []byte(" x")}}},
		{"last complete line without blank line", "data: x\n", []SSEEvent{{"", []byte("x")}}},
		{"cut-off last line is dropped", "data: x\n\ndata: partial", []SSEEvent{{"", []byte("x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time also exercises lines split across reads.
			got, err := readAll(NewSSEReader(iotest.OneByteReader(strings.NewReader(tt.in)), 64))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want io.EOF", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i].Name != tt.want[i].Name || !bytes.Equal(got[i].Data, tt.want[i].Data) {
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
			_, err := readAll(NewSSEReader(strings.NewReader(tt.in), 1000))
			if !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("err = %v, want ErrEventTooLarge", err)
			}
		})
	}
	// The same bound allows an event just under it.
	in := "data: " + strings.Repeat("x", 1000) + "\n\n"
	got, err := readAll(NewSSEReader(strings.NewReader(in), 1000))
	if !errors.Is(err, io.EOF) || len(got) != 1 || len(got[0].Data) != 1000 {
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
	f.Add("content_block_delta", `{"type":"content_block_delta"}`, false)
	f.Add("", "", true)
	f.Add("a:b", " two\nlines", true)
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
		got, err := readAll(NewSSEReader(strings.NewReader(wire.String()), 8192))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v", err)
		}
		if len(got) != 2 {
			t.Fatalf("%d events from %q", len(got), wire.String())
		}
		for _, ev := range got {
			if ev.Name != name || string(ev.Data) != data {
				t.Fatalf("event (%q, %q), want (%q, %q)", ev.Name, ev.Data, name, data)
			}
		}
	})
}
