package events

import (
	"errors"
	"strings"
	"testing"
)

func TestParseChannel(t *testing.T) {
	cases := []struct {
		channel, session string
		wildcard         bool
		err              error
	}{
		{"/tokencast/sessions/abc-1", "abc-1", false, nil},
		{"tokencast/sessions/abc-1", "abc-1", false, nil},
		{"/tokencast/sessions/abc-1/*", "abc-1", true, nil},
		{"/tokencast/sessions/*", "", true, ErrWildcard},
		{"/tokencast/*", "", true, ErrWildcard},
		{"/*", "", true, ErrWildcard},
		{"/tokencast/sessions/a*b", "", true, ErrWildcard},
		{"/tokencast/sessions/a b", "", false, ErrBadChannel},
		{"/tokencast/sessions/abc/def", "", false, ErrBadChannel},
		{"/default/chat", "", false, ErrBadChannel},
		{"", "", false, ErrBadChannel},
		{"/tokencast/sessions/" + strings.Repeat("a", 129), "", false, ErrBadChannel},
	}
	for _, c := range cases {
		session, wildcard, err := ParseChannel(c.channel)
		if session != c.session || wildcard != c.wildcard || !errors.Is(err, c.err) {
			t.Errorf("ParseChannel(%q) = %q, %v, %v; want %q, %v, %v", c.channel, session, wildcard, err, c.session, c.wildcard, c.err)
		}
	}
	if got := SessionChannel("abc"); got != "/tokencast/sessions/abc" {
		t.Errorf("SessionChannel = %q", got)
	}
}

// FuzzDecodeMessage: a client frame of the real-time WebSocket never
// panics the decoder, and what it accepts names a type, an id of a bounded
// length and events that are strings.
func FuzzDecodeMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"connection_init"}`,
		`{"type":"subscribe","id":"1","channel":"/tokencast/sessions/s1","authorization":{"x-api-key":"k","host":"h"}}`,
		`{"type":"publish","id":"p","channel":"/tokencast/sessions/s1","events":["\"hi\"","{\"message\":\"x\"}"],"payload":{}}`,
		`{"type":"publish","id":"p","events":[{"a":1}]}`,
		`{"type":"unsubscribe","id":"1"}`,
		`{not json`, `[]`, `null`, `{"type":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := DecodeMessage(data)
		if len(msg.ID) > maxIDLen {
			t.Fatalf("an id of %d bytes got through", len(msg.ID))
		}
		if err != nil {
			return
		}
		if msg.Type == "" {
			t.Fatal("a message without a type was accepted")
		}
		if _, _, err := ParseChannel(msg.Channel); err == nil && msg.Channel == "" {
			t.Fatal("an empty channel parsed")
		}
	})
}
