package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// haiku is a real Bedrock model id: it has a colon of its own.
const (
	haikuID  = "anthropic.claude-3-haiku-20240307-v1:0"
	haikuRef = "bedrock:" + haikuID
)

// bedrockFake speaks Bedrock's ConverseStream: SigV4-signed requests, JSON
// errors named by X-Amzn-Errortype, answers as an AWS event stream framed by
// the SDK's own encoder. What it does depends on the model id in the path.
type bedrockFake struct {
	srv *httptest.Server

	mu    sync.Mutex
	calls map[string][]time.Time // by model id, as the request path names it
	// canceled is told the model id of each request the client abandoned.
	canceled chan string
}

func newBedrockFake(t *testing.T) *bedrockFake {
	f := &bedrockFake{calls: map[string][]time.Time{}, canceled: make(chan string, 16)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *bedrockFake) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/model/")
	id, ok2 := strings.CutSuffix(id, "/converse-stream")
	if !ok || !ok2 || r.Method != http.MethodPost {
		f.fail(w, http.StatusNotFound, "UnknownOperationException", 0)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDFAKEEXAMPLE/") {
		f.fail(w, http.StatusForbidden, "UnrecognizedClientException", 0)
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls[id] = append(f.calls[id], time.Now())
	n := len(f.calls[id])
	f.mu.Unlock()

	switch {
	case id == "throttle-once" && n == 1:
		f.fail(w, http.StatusTooManyRequests, "ThrottlingException", time.Second)
		return
	case id == "throttle-long":
		f.fail(w, http.StatusTooManyRequests, "ThrottlingException", time.Minute)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	send := func(messageType, name, payload string) { bedrockFrame(w, messageType, name, payload) }
	switch id {
	case "agent":
		f.agent(send, body)
		return
	case "pause-mid":
		f.pauseMid(r, send, id)
		return
	}
	send("event", "messageStart", `{"role":"assistant"}`)
	for i, tok := range fakeAnswer {
		text, _ := json.Marshal(tok)
		send("event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":`+string(text)+`}}`)
		// fail-mid-<exception> fails after two tokens, as Bedrock does
		// mid-stream: an exception frame in a 200 response.
		if exception, ok := strings.CutPrefix(id, "fail-mid-"); ok && i == 1 {
			send("exception", exception, `{"message":"RAW-BEDROCK-TEXT","originalStatusCode":503}`)
			return
		}
	}
	send("event", "contentBlockStop", `{"contentBlockIndex":0}`)
	send("event", "messageStop", `{"stopReason":"end_turn"}`)
	send("event", "metadata", `{"usage":{"inputTokens":21,"outputTokens":4,"totalTokens":25},"metrics":{"latencyMs":12}}`)
}

// bedrockFrame writes one event stream frame, framed by the SDK's own
// encoder, and flushes it.
func bedrockFrame(w http.ResponseWriter, messageType, name, payload string) {
	typeHeader := ":event-type"
	if messageType == "exception" {
		typeHeader = ":exception-type"
	}
	var b bytes.Buffer
	_ = eventstream.NewEncoder().Encode(&b, eventstream.Message{
		Headers: eventstream.Headers{
			{Name: ":message-type", Value: eventstream.StringValue(messageType)},
			{Name: typeHeader, Value: eventstream.StringValue(name)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
		},
		Payload: []byte(payload),
	})
	_, _ = w.Write(b.Bytes())
	w.(http.Flusher).Flush()
}

// pauseMid streams two chunks of the fake's answer, then waits pauseFor
// before the rest, or until the client abandons the request (then told on
// canceled): a call cancelled in the pause never reaches its metadata
// event.
func (f *bedrockFake) pauseMid(r *http.Request, send func(messageType, name, payload string), id string) {
	send("event", "messageStart", `{"role":"assistant"}`)
	for i, tok := range fakeAnswer {
		text, _ := json.Marshal(tok)
		send("event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":`+string(text)+`}}`)
		if i != 1 {
			continue
		}
		select {
		case <-r.Context().Done():
			f.canceled <- id
			return
		case <-time.After(pauseFor):
		}
	}
	send("event", "contentBlockStop", `{"contentBlockIndex":0}`)
	send("event", "messageStop", `{"stopReason":"end_turn"}`)
	send("event", "metadata", `{"usage":{"inputTokens":21,"outputTokens":4,"totalTokens":25},"metrics":{"latencyMs":12}}`)
}

// fail answers as Bedrock does a request it refuses, with Retry-After when
// retryAfter is set.
func (f *bedrockFake) fail(w http.ResponseWriter, status int, errType string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(retryAfter.Seconds())))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", errType+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"message":"RAW-BEDROCK-TEXT"}`)
}

func (f *bedrockFake) callTimes(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[id]...)
}

// awsEnv points the AWS SDK at the fake. The SDK reads its credential chain
// and endpoint from the process environment, not from the server's getenv,
// so these are set for the test process; the developer's own AWS setup is
// kept out. AWS_REGION goes in the server's env, which FromEnv reads.
func awsEnv(t *testing.T, f *bedrockFake) map[string]string {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                  filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":      filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_ACCESS_KEY_ID":                "AKIDFAKEEXAMPLE",
		"AWS_SECRET_ACCESS_KEY":            "fake-secret",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f.srv.URL,
		"AWS_SESSION_TOKEN":                "", "AWS_PROFILE": "", "AWS_BEARER_TOKEN_BEDROCK": "",
		"AWS_ENDPOINT_URL": "", "AWS_CA_BUNDLE": "", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "",
	} {
		t.Setenv(k, v)
	}
	return map[string]string{"AWS_REGION": "us-east-1"}
}

// models returns the models query's answer as name → default.
func (s *server) models(t *testing.T) map[string]bool {
	t.Helper()
	status, resp := s.post(t, "", `{ models { name default } }`, nil)
	var data struct {
		Models []struct {
			Name    string `json:"name"`
			Default bool   `json:"default"`
		} `json:"models"`
	}
	if status != http.StatusOK || len(resp.Errors) > 0 || json.Unmarshal(resp.Data, &data) != nil {
		t.Fatalf("models: %d %s %+v", status, resp.Data, resp.Errors)
	}
	out := map[string]bool{}
	for _, m := range data.Models {
		out[m.Name] = m.Default
	}
	return out
}

// The default model given by reference alone, by flag or by environment:
// the models query lists it as the default, the reference is split on its
// first colon only, and a question naming no model is answered by it.
func TestDefaultModelByReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
	}{
		{name: "--model", args: []string{"--model", haikuRef}},
		{name: "TOKENCAST_MODEL", env: haikuRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newBedrockFake(t)
			env := awsEnv(t, f)
			if tc.env != "" {
				env["TOKENCAST_MODEL"] = tc.env
			}
			s := start(t, "", env, append([]string{"--coalesce-window", "0"}, tc.args...)...)
			if got := s.models(t); len(got) != 2 || !got[haikuRef] || got["demo:default"] {
				t.Fatalf("models %v, want %s as the default beside demo:default", got, haikuRef)
			}
			c := subscribed(t, s, "s-default", nil)
			evs := c.answer("1", s.ask(t, "", "s-default", "hi", "en"))
			end := evs[len(evs)-1]
			if text(evs) != strings.Join(fakeAnswer, "") || end.Type != "END" || end.Model != haikuRef ||
				end.StopReason != "end_turn" || end.Usage == nil || end.Usage.TotalTokens != 25 {
				t.Fatalf("answer %q, last %+v; want the fake's answer from %s", text(evs), end, haikuRef)
			}
			if calls := f.callTimes(haikuID); len(calls) != 1 {
				t.Fatalf("Bedrock was asked for %q %d times, want once: the id keeps its own colon", haikuID, len(calls))
			}
		})
	}
}

const bedrockModelsYAML = `default_model: other
models:
  other: {ref: "demo:default"}
  haiku: {ref: "` + haikuRef + `"}
  throttled: {ref: "bedrock:throttle-once"}
  over-budget: {ref: "bedrock:throttle-long"}
  throttled-mid: {ref: "bedrock:fail-mid-throttlingException", fallbacks: [haiku]}
  unavailable-mid: {ref: "bedrock:fail-mid-serviceUnavailableException", fallbacks: [haiku]}
`

// Bedrock through the running server: Retry-After is waited for, a wait
// beyond the retry budget is not, and a failure after the first token is
// neither retried nor handed to a fallback.
func TestBedrockFailureSemantics(t *testing.T) {
	f := newBedrockFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(bedrockModelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "", awsEnv(t, f), "--config", cfgPath, "--model", "haiku", "--coalesce-window", "0",
		"--provider-retries", "2", "--retry-budget", "10s")
	if got := s.models(t); !got["haiku"] || got["other"] {
		t.Fatalf("models %v: --model haiku must win over the file's default_model", got)
	}
	whole := strings.Join(fakeAnswer, "")
	partial := strings.Join(fakeAnswer[:2], "")
	cases := []struct {
		name, model, id string
		wantType        string
		wantCode        string
		wantStatus      string
		wantText        string // stored
		wantCalls       int
	}{
		{"429 ThrottlingException with Retry-After, then success", "throttled", "throttle-once", "END", "", "COMPLETE", whole, 2},
		{"Retry-After beyond the retry budget", "over-budget", "throttle-long", "ERROR", "PROVIDER_THROTTLED", "ERROR", "", 1},
		{"throttled after the first token", "throttled-mid", "fail-mid-throttlingException", "ERROR", "PROVIDER_THROTTLED", "INCOMPLETE", partial, 1},
		{"unavailable after the first token", "unavailable-mid", "fail-mid-serviceUnavailableException", "ERROR", "PROVIDER_UNAVAILABLE", "INCOMPLETE", partial, 1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			session := fmt.Sprintf("s-bedrock-%d", i)
			c := subscribed(t, s, session, nil)
			evs := c.answer("1", s.askModel(t, session, "hi", "en", tc.model))
			last := evs[len(evs)-1]
			if last.Type != tc.wantType {
				t.Fatalf("ended with %s (%+v), want %s", types(evs), last.Error, tc.wantType)
			}
			if tc.wantCode != "" && (last.Error == nil || last.Error.Code != tc.wantCode || strings.Contains(last.Error.Message, "RAW-BEDROCK-TEXT")) {
				t.Fatalf("error %+v, want code %s and a safe message", last.Error, tc.wantCode)
			}
			if tc.wantType == "END" && (text(evs) != whole || last.Model != "bedrock:"+tc.id) {
				t.Fatalf("text %q from %s, want the whole answer from bedrock:%s", text(evs), last.Model, tc.id)
			}
			if tc.wantType == "ERROR" && !strings.HasPrefix(text(evs), tc.wantText) {
				t.Fatalf("subscribers saw %q, want the partial answer %q first", text(evs), tc.wantText)
			}
			turns := s.conversation(t, "", session)
			if len(turns) != 2 || turns[1].Status != tc.wantStatus || turns[1].Text != tc.wantText {
				t.Fatalf("stored %+v, want %s with %q", turns, tc.wantStatus, tc.wantText)
			}
			if calls := f.callTimes(tc.id); len(calls) != tc.wantCalls {
				t.Fatalf("Bedrock was asked %d times, want %d", len(calls), tc.wantCalls)
			}
		})
	}
	if calls := f.callTimes("throttle-once"); calls[1].Sub(calls[0]) < 900*time.Millisecond {
		t.Fatalf("retried %v after the 429, want at least its 1 s Retry-After", calls[1].Sub(calls[0]))
	}
	if calls := f.callTimes(haikuID); len(calls) != 0 {
		t.Fatalf("the fallback was asked %d times, want never: the failures came after the first token", len(calls))
	}
	// Usage: each call once, as Bedrock reported it. A refused call
	// (429) cost nothing; a stream that failed before its metadata frame
	// reported nothing, so it is estimated: "The fake " is three tokens,
	// the prompt (the default system prompt and "hi") a dozen.
	r := s.usageOf(t, "", "", 5, "model")
	for id, want := range map[string][3]int{ // calls, input, output
		"throttle-once": {2, 21, 4}, "throttle-long": {1, 0, 0},
		"fail-mid-throttlingException": {1, 12, 3}, "fail-mid-serviceUnavailableException": {1, 12, 3},
	} {
		got := rowOf(t, r, "bedrock:"+id)
		estimated := 0
		if strings.HasPrefix(id, "fail-mid-") {
			estimated = 1
		}
		if got.Calls != want[0] || got.InputTokens != want[1] || got.OutputTokens != want[2] || got.EstimatedCalls != estimated {
			t.Errorf("usage of bedrock:%s %+v, want %d calls, %d+%d tokens, %d estimated", id, got, want[0], want[1], want[2], estimated)
		}
	}
}
