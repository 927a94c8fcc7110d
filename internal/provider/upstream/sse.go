// Package upstream holds what the HTTP model providers share in talking to
// their upstream service: a bounded reader of server-sent events, and the
// Error a failed answer carries, with its stable codes, user-safe messages,
// HTTP status mapping and Retry-After reading.
package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes bounds one line and one event's data, so a misbehaving server
// cannot make us buffer without limit.
const MaxEventBytes = 1 << 20

// ErrEventTooLarge reports a line or event larger than the reader's bound.
var ErrEventTooLarge = errors.New("server-sent event too large")

// SSEEvent is one dispatched server-sent event.
type SSEEvent struct {
	// Name is the event field, "" when the event had none.
	Name string
	// Data is the event's data lines joined with LF.
	Data []byte
}

// SSEReader decodes a text/event-stream body line by line, holding at most
// max bytes of one line or one event's data.
type SSEReader struct {
	r    *bufio.Reader
	max  int
	line []byte
	data []byte
	eof  bool
}

// NewSSEReader returns a reader of the event stream r that refuses, with
// ErrEventTooLarge, an event of more than max bytes of data or a line too
// long to carry max bytes of value.
func NewSSEReader(r io.Reader, max int) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 4096), max: max}
}

// Next returns the next event. Its data is valid until the following call.
// It returns io.EOF once the body has ended; a line cut off by the end of the
// body is dropped, since its content cannot be trusted.
func (s *SSEReader) Next() (SSEEvent, error) {
	var name string
	hasData := false
	s.data = s.data[:0]
	for {
		line, err := s.readLine()
		if err == io.EOF && hasData {
			// A server that closes right after its last data line, without
			// the blank line, still said that line in full.
			return SSEEvent{Name: name, Data: s.data}, nil
		}
		if err != nil {
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			if hasData {
				return SSEEvent{Name: name, Data: s.data}, nil
			}
			name = ""
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], bytes.TrimPrefix(line[i+1:], []byte(" "))
		}
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			if len(s.data)+len(value) > s.max {
				return SSEEvent{}, fmt.Errorf("%w: more than %d bytes of data", ErrEventTooLarge, s.max)
			}
			s.data = append(s.data, value...)
			hasData = true
		}
		// Comments (a leading ':'), id, retry and unknown fields carry
		// nothing a model's answer needs.
	}
}

// readLine returns the next complete line without its line ending.
func (s *SSEReader) readLine() ([]byte, error) {
	if s.eof {
		return nil, io.EOF
	}
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		// Room for a field name and line ending beside max bytes of value.
		if len(s.line)+len(chunk) > s.max+16 {
			return nil, fmt.Errorf("%w: a line longer than %d bytes", ErrEventTooLarge, s.max)
		}
		s.line = append(s.line, chunk...)
		switch {
		case err == nil:
			line := bytes.TrimSuffix(s.line[:len(s.line)-1], []byte("\r"))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			s.eof = true
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
