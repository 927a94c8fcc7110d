package wsproto

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/tokencast/tokencast/internal/auth"
)

// authObject is the AppSync real-time auth object, e.g.
// {"host":"…","x-api-key":"…"}. Keys are matched case-insensitively, as
// HTTP header names are.
type authObject map[string]string

// credentials returns the object's x-api-key and Authorization, if any.
func (a authObject) credentials() auth.Credentials {
	return auth.Credentials{APIKey: a["x-api-key"], Authorization: a["authorization"]}
}

var errAuthObject = errors.New("the auth header is not base64 of a JSON object")

// decodeAuthObject reads a base64 (standard or URL alphabet, padded or not)
// JSON object whose values are strings; other values are ignored.
func decodeAuthObject(encoded string) (authObject, error) {
	raw, err := decodeBase64(encoded)
	if err != nil {
		return nil, errAuthObject
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, errAuthObject
	}
	return authObjectFrom(fields), nil
}

func authObjectFrom(fields map[string]json.RawMessage) authObject {
	obj := make(authObject, len(fields))
	for k, v := range fields {
		var s string
		if json.Unmarshal(v, &s) == nil {
			obj[strings.ToLower(k)] = s
		}
	}
	return obj
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// headerSubprotocolPrefix marks the subprotocol that carries the auth object
// (Amplify v6): "header-<base64url JSON>".
const headerSubprotocolPrefix = "header-"

// requestAuthObject finds the auth object of an upgrade request: the
// ?header= query parameter (Amplify v5), a header-… subprotocol (Amplify v6),
// or, failing both, the plain HTTP headers. found is false when the request
// carries none; err is set when one is present but malformed.
func requestAuthObject(r *http.Request) (obj authObject, found bool, err error) {
	if h := r.URL.Query().Get("header"); h != "" {
		obj, err := decodeAuthObject(h)
		return obj, true, err
	}
	for _, p := range websocketSubprotocols(r) {
		if enc, ok := strings.CutPrefix(p, headerSubprotocolPrefix); ok {
			obj, err := decodeAuthObject(enc)
			return obj, true, err
		}
	}
	obj = authObject{}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		obj["x-api-key"] = k
	}
	if k := r.Header.Get("Authorization"); k != "" {
		obj["authorization"] = k
	}
	return obj, len(obj) > 0, nil
}

func websocketSubprotocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
