package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// This file holds what the tests of the UI toolkits' protocols (the AI
// SDK's UI message stream, AG-UI) share: plain HTTP requests with an API
// key, and reading the server-sent events they answer with.

// uiRequest sends a request to one of the UI toolkits' endpoints with an
// API key (none when empty) and extra headers; a body is sent as JSON.
func uiRequest(t *testing.T, s *server, method, path, apiKey string, body any, header http.Header) *http.Response {
	t.Helper()
	resp, err := s.client.Do(newUIRequest(t, s, method, path, apiKey, body, header))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// newUIRequest is the request uiRequest makes.
func newUIRequest(t *testing.T, s *server, method, path, apiKey string, body any, header http.Header) *http.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.scheme+"://"+s.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("X-Api-Key", apiKey)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

// sseData reads the data lines of a server-sent event stream, one JSON
// object each, until [DONE] (ok) or the end of the stream (not ok). fn may
// stop early by returning false.
func sseData(t *testing.T, body io.Reader, fn func(raw []byte) bool) (ok bool) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		data, found := strings.CutPrefix(line, "data: ")
		if !found {
			continue // blank separators, keep-alive comments
		}
		if data == "[DONE]" {
			return true
		}
		if !json.Valid([]byte(data)) {
			t.Fatalf("a data line that is not JSON: %q", data)
		}
		if !fn([]byte(data)) {
			return false
		}
	}
	return false
}

// refused checks that a refused request got status and, in the JSON error
// body GraphQL clients know, code.
func refused(t *testing.T, what string, resp *http.Response, status int, code string) {
	t.Helper()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("%s: HTTP %d %s, want %d", what, resp.StatusCode, raw, status)
		return
	}
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Errors) != 1 || out.Errors[0].Extensions["code"] != code || out.Errors[0].Message == "" {
		t.Errorf("%s: body %s, want one error with code %s and a message", what, raw, code)
	}
}

// waitTurn waits until the session's conversation shows the answer to
// request with status, as a reload would show it.
func waitTurn(t *testing.T, s *server, apiKey, session, request, status string) turn {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, tr := range s.conversation(t, apiKey, session) {
			if tr.RequestID == request && tr.Role == "ASSISTANT" && tr.Status == status {
				return tr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answer %s never showed %s: %+v", request, status, s.conversation(t, apiKey, session))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collapse writes a sequence of frame types with each run of one type as
// "TYPE…", so a table says the shape of a stream, not its token count.
func collapse(types []string) string {
	var out []string
	for _, typ := range types {
		if n := len(out); n > 0 && (out[n-1] == typ || out[n-1] == typ+"…") {
			out[n-1] = typ + "…"
			continue
		}
		out = append(out, typ)
	}
	return strings.Join(out, " ")
}

// checkText checks an answer's text: want exactly or, when want ends with
// "…", text that begins with the rest.
func checkText(t *testing.T, got, want string) {
	t.Helper()
	if prefix, ok := strings.CutSuffix(want, "…"); ok && strings.HasPrefix(got, prefix) || got == want {
		return
	}
	t.Errorf("text %q, want %q", got, want)
}
