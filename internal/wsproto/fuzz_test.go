package wsproto

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
)

// The seeds below are joined by the corpus in testdata/fuzz/<FuzzName>/.

func FuzzGraphQLWSFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"connection_init"}`,
		`{"id":"1","type":"start","payload":{"data":"{\"query\":\"subscription{onSendMessage(sessionId:\\\"s\\\"){message}}\"}","extensions":{"authorization":{"host":"h","x-api-key":"k"}}}}`,
		`{"id":"1","type":"start","payload":{"query":"{ __typename }","variables":{"a":1}}}`,
		`{"id":"1","type":"stop"}`,
		`{"type":"connection_terminate"}`,
		`{"id":"1","type":"start","payload":{"data":7}}`,
		`{"type":""}`,
		`[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := decodeGWS(data)
		if err != nil {
			return
		}
		if msg.Type == "" {
			t.Fatalf("accepted a message without a type: %q", data)
		}
		st, err := decodeStart(msg.Payload)
		if err != nil {
			return
		}
		if st.params.Query == "" {
			t.Fatalf("accepted a start without a query: %q", data)
		}
		var p struct {
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(msg.Payload, &p)
		var s string
		if isString := json.Unmarshal(p.Data, &s) == nil; isString != st.appSync {
			t.Fatalf("appSync=%v but payload.data is a string: %v (%q)", st.appSync, isString, data)
		}
		if !st.appSync && st.auth != nil {
			t.Fatalf("a legacy start carried an AppSync auth object: %q", data)
		}
	})
}

func FuzzTransportWSFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"connection_init","payload":{"x-api-key":"k"}}`,
		`{"id":"1","type":"subscribe","payload":{"query":"subscription{onSendMessage(sessionId:\"s\"){message}}","variables":{"sessionId":"s"}}}`,
		`{"type":"ping","payload":{"n":1}}`,
		`{"id":"1","type":"complete"}`,
		`{"id":"","type":"subscribe","payload":{"query":"q"}}`,
		`{"type":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, ok := decodeTransport(data)
		if !ok {
			return
		}
		if msg.Type == "" {
			t.Fatalf("accepted a message without a type: %q", data)
		}
		params, ok := decodeSubscribe(msg)
		if ok && (msg.ID == "" || params.Query == "") {
			t.Fatalf("accepted a subscribe without id or query: %q", data)
		}
	})
}

func FuzzAuthObject(f *testing.F) {
	for _, seed := range []string{
		base64.StdEncoding.EncodeToString([]byte(`{"host":"example.com","x-api-key":"k"}`)),
		base64.RawURLEncoding.EncodeToString([]byte(`{"Authorization":"jwt","host":"h"}`)),
		"e30=", "e30", "!!", "", "bnVsbA==",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, encoded string) {
		obj, err := decodeAuthObject(encoded)
		if err != nil {
			return
		}
		if obj == nil {
			t.Fatalf("nil object without an error for %q", encoded)
		}
		// What was decoded survives a round trip through both alphabets.
		raw, _ := json.Marshal(obj)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			again, err := decodeAuthObject(enc.EncodeToString(raw))
			if err != nil || !reflect.DeepEqual(again, obj) {
				t.Fatalf("round trip of %q: %v %v", encoded, again, err)
			}
		}
	})
}
