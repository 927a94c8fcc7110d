package bus

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// codecEvents are the shapes the bus stores: a START, DELTAs with text that
// needs escaping, an END with usage, an ERROR.
func codecEvents() []chat.Event {
	at := time.Date(2026, 11, 25, 19, 4, 5, 123456789, time.UTC)
	return []chat.Event{
		{Type: chat.EventStart, SessionID: "s-1", RequestID: "r-1", Message: chat.MarkerStart, Locale: "en", TimeStamp: at, Model: "demo:default", Attempt: 1},
		{Type: chat.EventDelta, SessionID: "s-1", RequestID: "r-1", Index: 1, Message: "Hello, \"world\" <b>&</b>\n\t\\ é ✓ 🎉 \u2028\u2029 \x01", Locale: "fr-FR", TimeStamp: at, Model: "demo:default", StartSeq: 41, Attempt: 2},
		{Type: chat.EventDelta, SessionID: "s-1", RequestID: "r-1", Index: 2, Message: "bad utf-8: \xff\xfe end", TimeStamp: at.In(time.FixedZone("", 5*3600+30*60))},
		{Type: chat.EventEnd, SessionID: "s-1", RequestID: "r-1", Index: 3, Message: chat.MarkerEnd, TimeStamp: at, Usage: &chat.Usage{InputTokens: 12, OutputTokens: 34, TotalTokens: 46}, StopReason: "end_turn", TTFTMillis: 250, StartSeq: 41},
		{Type: chat.EventError, SessionID: "s-1", RequestID: "r-1", Index: -4, Message: chat.MarkerError, Error: &chat.StreamError{Code: "PROVIDER_ERROR", Message: "the model could not answer"}},
		{Type: chat.EventMessage, SessionID: "s-2", Message: "", TimeStamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
}

func TestEventCodecWritesWhatEncodingJSONWrites(t *testing.T) {
	for _, ev := range codecEvents() {
		want, wantErr := json.Marshal(ev)
		got, err := encodeEvent(&ev)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Errorf("encoded %s (%v), encoding/json %s (%v)", got, err, want, wantErr)
		}
		if err != nil {
			continue
		}
		var back, std chat.Event
		if err := json.Unmarshal(got, &std); err != nil {
			t.Fatal(err)
		}
		if err := unmarshalEvent(got, &back); err != nil || !reflect.DeepEqual(back, std) {
			t.Errorf("decoded %s as %+v (%v), encoding/json as %+v", got, back, err, std)
		}
		if ev.Message == std.Message && !sameEvent(back, ev) { // valid UTF-8 comes back as it went
			t.Errorf("%+v came back as %+v", ev, back)
		}
	}
}

// sameEvent compares events with instants compared as instants: a decoded
// time carries no monotonic reading and its own location pointer.
func sameEvent(a, b chat.Event) bool {
	if !a.TimeStamp.Equal(b.TimeStamp) {
		return false
	}
	a.TimeStamp, b.TimeStamp = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// FuzzEventCodec holds the codec to encoding/json: the same bytes out for any
// event, and the same event (or the same refusal) for any bytes in.
func FuzzEventCodec(f *testing.F) {
	for _, ev := range codecEvents() {
		if data, err := json.Marshal(ev); err == nil {
			f.Add(data, ev.Message, int64(ev.Index), int64(0))
		}
	}
	f.Add([]byte(`{"type":"DELTA","Type":"END"}`), "", int64(0), int64(0))
	f.Add([]byte(` { "index" : -0 , "message" : "a\u00e9\ud83c\udf89" , "usage" : null } `), "x", int64(-1), int64(90000))
	f.Add([]byte(`{"index":1e2,"startSeq":-1,"attempt":18446744073709551616}`), "", int64(1<<40), int64(-3600))
	f.Add([]byte(`{"timeStamp":"2026-11-25T19:04:05.10Z","usage":{"inputTokens":1,"inputTokens":2}}`), "\xed\xa0\x80", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, message string, n, offset int64) {
		var want, got chat.Event
		wantErr := json.Unmarshal(data, &want)
		gotErr := unmarshalEvent(data, &got)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: codec error %v, encoding/json error %v", data, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: codec %+v, encoding/json %+v", data, got, want)
		}

		ev := chat.Event{Type: chat.EventDelta, SessionID: message, RequestID: message, Index: int(n), Message: message,
			Locale: message, TimeStamp: time.Unix(n, n).In(time.FixedZone("", int(offset))), StopReason: message, Model: message,
			TTFTMillis: n, StartSeq: uint64(n), Attempt: uint64(offset)}
		if n%2 == 0 {
			ev.Usage = &chat.Usage{InputTokens: int(n), OutputTokens: int(offset), TotalTokens: int(n + offset)}
			ev.Error = &chat.StreamError{Code: message, Message: message}
		}
		wantBytes, wantErr := json.Marshal(ev)
		gotBytes, gotErr := encodeEvent(&ev)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(gotBytes, wantBytes) {
			t.Fatalf("encoded %q (%v), encoding/json %q (%v)", gotBytes, gotErr, wantBytes, wantErr)
		}
	})
}

func BenchmarkEventCodec(b *testing.B) {
	ev := codecEvents()[1]
	ev.Message = "~12.17 padding.."
	data, _ := json.Marshal(ev)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = encodeEvent(&ev)
		}
	})
	b.Run("encode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&ev)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e chat.Event
			_ = unmarshalEvent(data, &e)
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e chat.Event
			_ = json.Unmarshal(data, &e)
		}
	})
}
