package bus

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tokencast/tokencast/internal/chat"
)

// Every token of every answer is one stored event, encoded once by its worker
// and decoded once per watching node, so the event codec is on the hot path.
// encoding/json spends about 1.4 µs encoding and 3.6 µs decoding a DELTA, mostly
// in reflection. appendEvent writes the bytes json.Marshal would write (the
// fuzz test holds it to that, byte for byte); unmarshalEvent reads that shape
// directly and hands anything else (another key order is fine; an unknown or
// repeated key, null, whitespace inside a value it does not expect, an escape
// it does not handle) to encoding/json, so what it accepts and how is never
// different from json.Unmarshal.

// appendEvent appends ev as json.Marshal encodes it. ok is false when ev holds
// something only encoding/json knows how to refuse (a timestamp outside years
// 0–9999 or with a zone offset of a day or more), or what it leaves to
// encoding/json: the agent events' parts and the rarer usage counts, which
// are not per token.
func appendEvent(b []byte, ev *chat.Event) (_ []byte, ok bool) {
	_, offset := ev.TimeStamp.Zone()
	if y := ev.TimeStamp.Year(); y < 0 || y > 9999 || offset <= -24*3600 || offset >= 24*3600 {
		return b, false
	}
	if ev.Tool != nil || ev.Step != nil || ev.Source != nil || ev.Approval != nil ||
		(ev.Usage != nil && (ev.Usage.ReasoningTokens != 0 || ev.Usage.CacheReadTokens != 0 || ev.Usage.CacheWriteTokens != 0)) {
		return b, false
	}
	b = append(b, `{"type":`...)
	b = chat.AppendQuoted(b, string(ev.Type))
	b = append(b, `,"sessionId":`...)
	b = chat.AppendQuoted(b, ev.SessionID)
	if ev.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = chat.AppendQuoted(b, ev.RequestID)
	}
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(ev.Index), 10)
	b = append(b, `,"message":`...)
	b = chat.AppendQuoted(b, ev.Message)
	b = append(b, `,"locale":`...)
	b = chat.AppendQuoted(b, ev.Locale)
	b = append(b, `,"timeStamp":"`...)
	b = ev.TimeStamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if u := ev.Usage; u != nil {
		b = append(b, `,"usage":{"inputTokens":`...)
		b = strconv.AppendInt(b, int64(u.InputTokens), 10)
		b = append(b, `,"outputTokens":`...)
		b = strconv.AppendInt(b, int64(u.OutputTokens), 10)
		b = append(b, `,"totalTokens":`...)
		b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
		b = append(b, '}')
	}
	if ev.StopReason != "" {
		b = append(b, `,"stopReason":`...)
		b = chat.AppendQuoted(b, ev.StopReason)
	}
	if ev.Model != "" {
		b = append(b, `,"model":`...)
		b = chat.AppendQuoted(b, ev.Model)
	}
	if e := ev.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b = chat.AppendQuoted(b, e.Code)
		b = append(b, `,"message":`...)
		b = chat.AppendQuoted(b, e.Message)
		b = append(b, '}')
	}
	if ev.TTFTMillis != 0 {
		b = append(b, `,"ttftMs":`...)
		b = strconv.AppendInt(b, ev.TTFTMillis, 10)
	}
	if ev.StartSeq != 0 {
		b = append(b, `,"startSeq":`...)
		b = strconv.AppendUint(b, ev.StartSeq, 10)
	}
	if ev.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendUint(b, ev.Attempt, 10)
	}
	return append(b, '}'), true
}

// encodeEvent is appendEvent into a new buffer, or json.Marshal for what
// appendEvent leaves to it.
func encodeEvent(ev *chat.Event) ([]byte, error) {
	if b, ok := appendEvent(make([]byte, 0, 256+len(ev.Message)), ev); ok {
		return b, nil
	}
	// A copy escapes to encoding/json, so the caller's event need not live
	// on the heap for the events that never come here.
	slow := *ev
	return json.Marshal(&slow)
}

// unmarshalEvent decodes data into ev exactly as json.Unmarshal would.
func unmarshalEvent(data []byte, ev *chat.Event) error {
	d := eventDecoder{data: data}
	var fast chat.Event
	if d.event(&fast) && d.end() {
		*ev = fast
		return nil
	}
	// Into a copy, so the caller's event need not live on the heap.
	var slow chat.Event
	if err := json.Unmarshal(data, &slow); err != nil {
		return err
	}
	*ev = slow
	return nil
}

// eventDecoder reads the events appendEvent writes; any method returning
// false means "not in the shape this decoder handles", never "invalid".
type eventDecoder struct {
	data []byte
	i    int
}

func (d *eventDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *eventDecoder) byte(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *eventDecoder) end() bool {
	d.space()
	return d.i == len(d.data)
}

// next moves to the next key of an object: after '{' (first is true) or
// after a value. done is true at the closing brace.
func (d *eventDecoder) next(first bool) (key []byte, done, ok bool) {
	if first {
		if !d.byte('{') {
			return nil, false, false
		}
		if d.byte('}') {
			return nil, true, true
		}
	} else {
		if d.byte('}') {
			return nil, true, true
		}
		if !d.byte(',') {
			return nil, false, false
		}
	}
	key, ok = d.key()
	return key, false, ok && d.byte(':')
}

// key reads an object key without escapes (encoding/json matches keys
// case-insensitively; an exact match is all this decoder takes).
func (d *eventDecoder) key() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		switch c := d.data[d.i]; {
		case c == '"':
			d.i++
			return d.data[start : d.i-1], true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// string reads a JSON string: plain and escaped ASCII, and valid UTF-8.
func (d *eventDecoder) string() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			s := string(d.data[start:d.i])
			d.i++
			return s, true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.data[d.i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			d.i += size
			continue
		}
		d.i++
	}
	return "", false
}

// escaped finishes a string that has escapes, from its first backslash.
func (d *eventDecoder) escaped(start int) (string, bool) {
	out := append(make([]byte, 0, 2*(d.i-start)+16), d.data[start:d.i]...)
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), true
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.data[d.i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			out = append(out, d.data[d.i:d.i+size]...)
			d.i += size
			continue
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.data) {
			return "", false
		}
		switch e := d.data[d.i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if d.i+6 > len(d.data) {
				return "", false
			}
			r, err := strconv.ParseUint(string(d.data[d.i+2:d.i+6]), 16, 16)
			if err != nil || utf16.IsSurrogate(rune(r)) {
				return "", false // surrogates are left to encoding/json
			}
			out = utf8.AppendRune(out, rune(r))
			d.i += 6
			continue
		default:
			return "", false
		}
		d.i += 2
	}
	return "", false
}

// uint reads digits without a sign, leading zero or fraction, as the Go
// integer of the given bits.
func (d *eventDecoder) uint(bits int) (uint64, bool) {
	d.space()
	start := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	digits := d.data[start:d.i]
	if len(digits) == 0 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	if d.i < len(d.data) {
		if c := d.data[d.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(digits), 10, bits)
	return n, err == nil
}

// int reads an optionally negative integer as a Go int of the given bits.
func (d *eventDecoder) int(bits int) (int64, bool) {
	d.space()
	neg := d.i < len(d.data) && d.data[d.i] == '-'
	if neg {
		d.i++
		if d.i < len(d.data) && (d.data[d.i] < '0' || d.data[d.i] > '9') {
			return 0, false
		}
	}
	n, ok := d.uint(64)
	if !ok {
		return 0, false
	}
	limit := uint64(1)<<(bits-1) - 1
	if neg {
		if n > limit+1 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > limit {
		return 0, false
	}
	return int64(n), true
}

func (d *eventDecoder) intField(dst *int) bool {
	n, ok := d.int(strconv.IntSize)
	*dst = int(n)
	return ok
}

// object reads an object's members: field reads the value of key and says
// which bit of the object's keys it is (0: not one this decoder takes), so a
// repeated key is refused.
func (d *eventDecoder) object(field func(key []byte) (bit uint32, ok bool)) bool {
	var seen uint32
	for first := true; ; first = false {
		key, done, ok := d.next(first)
		if done || !ok {
			return ok
		}
		bit, ok := field(key)
		if !ok || bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
}

// event reads the object appendEvent writes.
func (d *eventDecoder) event(ev *chat.Event) bool {
	return d.object(func(key []byte) (bit uint32, ok bool) {
		switch string(key) {
		case "type":
			var s string
			s, ok = d.string()
			ev.Type = chat.EventType(s)
			return 1 << 0, ok
		case "sessionId":
			ev.SessionID, ok = d.string()
			return 1 << 1, ok
		case "requestId":
			ev.RequestID, ok = d.string()
			return 1 << 2, ok
		case "index":
			return 1 << 3, d.intField(&ev.Index)
		case "message":
			ev.Message, ok = d.string()
			return 1 << 4, ok
		case "locale":
			ev.Locale, ok = d.string()
			return 1 << 5, ok
		case "timeStamp":
			return 1 << 6, d.time(&ev.TimeStamp)
		case "usage":
			u := new(chat.Usage)
			ev.Usage = u
			return 1 << 7, d.object(func(key []byte) (uint32, bool) {
				switch string(key) {
				case "inputTokens":
					return 1, d.intField(&u.InputTokens)
				case "outputTokens":
					return 2, d.intField(&u.OutputTokens)
				case "totalTokens":
					return 4, d.intField(&u.TotalTokens)
				}
				return 0, false
			})
		case "stopReason":
			ev.StopReason, ok = d.string()
			return 1 << 8, ok
		case "model":
			ev.Model, ok = d.string()
			return 1 << 9, ok
		case "error":
			e := new(chat.StreamError)
			ev.Error = e
			return 1 << 10, d.object(func(key []byte) (bit uint32, ok bool) {
				switch string(key) {
				case "code":
					e.Code, ok = d.string()
					return 1, ok
				case "message":
					e.Message, ok = d.string()
					return 2, ok
				}
				return 0, false
			})
		case "ttftMs":
			ev.TTFTMillis, ok = d.int(64)
			return 1 << 11, ok
		case "startSeq":
			ev.StartSeq, ok = d.uint(64)
			return 1 << 12, ok
		case "attempt":
			ev.Attempt, ok = d.uint(64)
			return 1 << 13, ok
		}
		return 0, false
	})
}

// time reads a timestamp as time.Time's UnmarshalJSON does: RFC 3339. What
// Parse lets through beyond that, the round trip refuses.
func (d *eventDecoder) time(t *time.Time) bool {
	s, ok := d.string()
	if !ok {
		return false
	}
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || parsed.Format(time.RFC3339Nano) != s {
		return false
	}
	*t = parsed
	return true
}
