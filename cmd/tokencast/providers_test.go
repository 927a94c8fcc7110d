package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// openAIFake speaks OpenAI's chat completions stream; what it does depends
// on the model a request names.
type openAIFake struct {
	srv *httptest.Server

	mu       sync.Mutex
	calls    map[string][]time.Time
	systems  []string
	canceled chan string // model ids whose request the client abandoned
	// longClosed is told each time the client closes a "long" answer.
	longClosed chan struct{}
}

var fakeAnswer = []string{"The ", "fake ", "model ", "answers."}

// pauseFor is how long the pause-* models stay silent before they answer
// on: longer than a short timeout, shorter than a long one.
const pauseFor = 5 * time.Second

func newOpenAIFake(t *testing.T) *openAIFake {
	f := &openAIFake{calls: map[string][]time.Time{}, canceled: make(chan string, 16), longClosed: make(chan struct{}, 256)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *openAIFake) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
	}
	if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-test" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls[req.Model] = append(f.calls[req.Model], time.Now())
	n := len(f.calls[req.Model])
	if len(req.Messages) > 0 && req.Messages[0].Role == "system" {
		f.systems = append(f.systems, req.Messages[0].Content)
	}
	f.mu.Unlock()

	// pause waits d, or until the client abandons the request (then told on
	// canceled); it says whether the request is still wanted.
	pause := func(d time.Duration) bool {
		select {
		case <-r.Context().Done():
			f.canceled <- req.Model
			return false
		case <-time.After(d):
			return true
		}
	}
	chunk := func(text string) {
		fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", text)
		w.(http.Flusher).Flush()
	}
	switch {
	case req.Model == "bad":
		http.Error(w, `{"error":{"message":"SECRET-RAW-TEXT invalid request"}}`, http.StatusBadRequest)
		return
	case req.Model == "down":
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
		return
	case req.Model == "throttle-once" && n == 1:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case req.Model == "stall-first":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		pause(20 * time.Second)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	if req.Model == "long" {
		f.long(w, r, req.Messages, chunk)
		return
	}
	if req.Model == "agent" {
		messages, _ := json.Marshal(req.Messages)
		f.agent(w, messages, chunk)
		return
	}
	if req.Model == "pause-first" {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if !pause(pauseFor) {
			return
		}
	}
	for i, tok := range fakeAnswer {
		chunk(tok)
		if req.Model == "pause-mid" && i == 1 && !pause(pauseFor) {
			return
		}
		// fail-mid fails after two tokens with an error object in the
		// stream, as compatible servers do.
		if req.Model == "fail-mid" && i == 1 {
			fmt.Fprint(w, "data: {\"error\":{\"type\":\"server_error\",\"message\":\"RAW-OPENAI-TEXT\"}}\n\n")
			return
		}
		if req.Model == "slow" && !pause(300*time.Millisecond) {
			return
		}
	}
	fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":4,\"total_tokens\":15}}\n\n")
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// long streams 2000 chunks of "abcd", a millisecond apart, counting a
// token per 4 characters as tokencast estimates them; it notes on
// longClosed a client that closes the stream before its end.
func (f *openAIFake) long(w http.ResponseWriter, r *http.Request, messages []struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}, chunk func(string)) {
	prompt := 0
	for _, m := range messages {
		prompt += utf8.RuneCountInString(m.Content)
	}
	const chunks = 2000
	for range chunks {
		chunk("abcd")
		select {
		case <-r.Context().Done():
			f.longClosed <- struct{}{}
			return
		case <-time.After(time.Millisecond):
		}
	}
	fmt.Fprintf(w, "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", (prompt+3)/4, chunks, (prompt+3)/4+chunks)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func (f *openAIFake) callTimes(model string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[model]...)
}

const modelsYAML = `default_model: ok
system_prompt: "Answer in {{.Language}} ({{.Locale}})."
models:
  ok: {ref: "openai:ok", max_tokens: 64, temperature: 0.2}
  throttled: {ref: "openai:throttle-once"}
  bad: {ref: "openai:bad", fallbacks: [ok]}
  stall-first: {ref: "openai:stall-first"}
  pause-first: {ref: "openai:pause-first"}
  pause-mid: {ref: "openai:pause-mid"}
  slow: {ref: "openai:slow"}
  primary: {ref: "openai:down", fallbacks: [ok]}
`

func startWithOpenAIFake(t *testing.T, args ...string) (*server, *openAIFake) {
	f := newOpenAIFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(modelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"}
	s := start(t, "", env, append([]string{"--config", cfgPath, "--coalesce-window", "0", "--provider-retries", "2"}, args...)...)
	return s, f
}

// askModel asks with a model and returns the request id.
func (s *server) askModel(t *testing.T, session, message, locale, model string) string {
	t.Helper()
	status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": session, "message": message, "locale": locale, "model": model}})
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("ask %s: %d %+v", model, status, resp.Errors)
	}
	var data struct {
		GetLlmResponse struct {
			RequestID string `json:"requestId"`
		} `json:"getLlmResponse"`
	}
	_ = json.Unmarshal(resp.Data, &data)
	return data.GetLlmResponse.RequestID
}

const endQuery = `subscription($s: String!) { onSendMessage(sessionId: $s) {
	sessionId message locale timeStamp type requestId index cursor stopReason model ttftMs
	usage { inputTokens outputTokens totalTokens } error { code message } } }`

func TestOpenAIProviderEndToEnd(t *testing.T) {
	s, f := startWithOpenAIFake(t)
	c := subscribed(t, s, "s-openai", nil)
	req := s.ask(t, "", "s-openai", "bonjour", "fr-FR") // the config's default model
	evs := c.answer("1", req)
	if got := text(evs); got != strings.Join(fakeAnswer, "") {
		t.Fatalf("answer %q", got)
	}
	end := evs[len(evs)-1]
	if end.Type != "END" || end.Model != "openai:ok" || end.StopReason != "stop" || end.Usage == nil ||
		end.Usage.InputTokens != 11 || end.Usage.OutputTokens != 4 || end.Usage.TotalTokens != 15 {
		t.Fatalf("END %+v usage %+v, want the fake's usage and stop reason", end, end.Usage)
	}
	f.mu.Lock()
	systems := f.systems
	f.mu.Unlock()
	if len(systems) != 1 || systems[0] != "Answer in French (fr-FR)." {
		t.Fatalf("system prompts sent: %q, want the locale rendered into the template", systems)
	}
	// END's ttftMs is set (the subscription above does not select it; ask
	// for it on a second answer).
	c2 := dialWS(t, s)
	c2.init(nil)
	c2.send(map[string]any{"id": "e", "type": "subscribe", "payload": map[string]any{"query": endQuery, "variables": map[string]any{"s": "s-openai"}}})
	c2.send(map[string]any{"type": "ping"})
	c2.must(5 * time.Second)
	req2 := s.ask(t, "", "s-openai", "encore", "fr-FR")
	for {
		m := c2.must(5 * time.Second)
		// The first answer may come first, replayed: it ended just before
		// this subscription (the late-join window).
		if strings.Contains(string(m.Payload), `"type":"END"`) && strings.Contains(string(m.Payload), req2) {
			if !strings.Contains(string(m.Payload), `"ttftMs":`) || strings.Contains(string(m.Payload), `"ttftMs":null`) || !strings.Contains(string(m.Payload), req2) {
				t.Fatalf("END without ttftMs: %s", m.Payload)
			}
			break
		}
	}
}

func TestProviderFailureSemantics(t *testing.T) {
	// Each timeout is short on one server and longer than the fake's pause
	// on the other. A stall runs where its own timeout is the short one: had
	// the other applied, the pause would end and the answer with END.
	firstShort, ff := startWithOpenAIFake(t, "--first-token-timeout", "400ms", "--idle-timeout", "20s")
	idleShort, fi := startWithOpenAIFake(t, "--first-token-timeout", "20s", "--idle-timeout", "400ms")
	cases := []struct {
		name, model  string
		wantType     string
		wantCode     string
		wantText     string
		wantStatus   string
		wantModel    string
		wantCanceled bool
		idleShort    bool // runs on the server whose idle timeout is short
	}{
		{"429 with Retry-After, then success", "throttled", "END", "", strings.Join(fakeAnswer, ""), "COMPLETE", "openai:throttle-once", false, false},
		{"a 400 is not retried nor passed to a fallback", "bad", "ERROR", "PROVIDER_ERROR", "", "ERROR", "", false, false},
		{"stall before the first token", "pause-first", "ERROR", "PROVIDER_TIMEOUT", "", "ERROR", "", true, false},
		{"stall mid-answer", "pause-mid", "ERROR", "PROVIDER_TIMEOUT", "The fake ", "INCOMPLETE", "", true, true},
		{"fallback before the first token", "primary", "END", "", strings.Join(fakeAnswer, ""), "COMPLETE", "openai:ok", false, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, f := firstShort, ff
			if tc.idleShort {
				s, f = idleShort, fi
			}
			session := fmt.Sprintf("s-fail-%d", i)
			c := subscribed(t, s, session, nil)
			req := s.askModel(t, session, "hi", "en", tc.model)
			evs := c.answer("1", req)
			last := evs[len(evs)-1]
			if last.Type != tc.wantType {
				t.Fatalf("ended with %s (%+v), want %s", types(evs), last.Error, tc.wantType)
			}
			if tc.wantCode != "" && (last.Error == nil || last.Error.Code != tc.wantCode || strings.Contains(last.Error.Message, "SECRET-RAW-TEXT")) {
				t.Fatalf("error %+v, want code %s and a safe message", last.Error, tc.wantCode)
			}
			if tc.wantType == "END" && (text(evs) != tc.wantText || last.Model != tc.wantModel) {
				t.Fatalf("text %q model %q, want %q from %s", text(evs), last.Model, tc.wantText, tc.wantModel)
			}
			turns := s.conversation(t, "", session)
			if len(turns) != 2 || turns[1].Status != tc.wantStatus || (tc.wantType == "ERROR" && turns[1].Text != tc.wantText) {
				t.Fatalf("stored %+v, want %s with %q", turns, tc.wantStatus, tc.wantText)
			}
			if tc.wantCanceled {
				select {
				case m := <-f.canceled:
					if m != tc.model {
						t.Fatalf("fake saw %s abandoned", m)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the upstream request was never closed")
				}
			}
		})
	}
	if calls := ff.callTimes("throttle-once"); len(calls) != 2 || calls[1].Sub(calls[0]) < 900*time.Millisecond {
		t.Fatalf("throttled model called at %v, want a retry after the 1 s Retry-After", calls)
	}
	if calls := ff.callTimes("bad"); len(calls) != 1 {
		t.Fatalf("the 400 was tried %d times, want once", len(calls))
	}
	if calls := ff.callTimes("down"); len(calls) != 3 {
		t.Fatalf("the failing primary was tried %d times, want 1 + 2 retries", len(calls))
	}
}

func TestCancelReachesTheProvider(t *testing.T) {
	s, f := startWithOpenAIFake(t, "--first-token-timeout", "20s")
	for i, tc := range []struct{ name, model string }{{"before the first token", "stall-first"}, {"after the first token", "slow"}} {
		t.Run(tc.name, func(t *testing.T) {
			session := fmt.Sprintf("s-cancel-%d", i)
			c := subscribed(t, s, session, nil)
			req := s.askModel(t, session, "hi", "en", tc.model)
			c.next("1") // START
			if tc.model == "slow" {
				c.next("1") // the first DELTA
			} else {
				// Cancelled before it is sent, the request would never
				// reach the fake to be abandoned there.
				for deadline := time.Now().Add(10 * time.Second); len(f.callTimes(tc.model)) == 0; time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the request never reached the provider")
					}
				}
			}
			if !s.cancelAnswer(t, session, req) {
				t.Fatal("cancel said the answer had ended")
			}
			select {
			case m := <-f.canceled:
				if m != tc.model {
					t.Fatalf("fake saw %s abandoned, want %s", m, tc.model)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream request was not cancelled")
			}
			evs := c.answer("1", req)
			if evs[len(evs)-1].Type != "CANCELLED" {
				t.Fatalf("events %s", types(evs))
			}
			if turns := s.conversation(t, "", session); len(turns) != 2 || turns[1].Status != "CANCELLED" {
				t.Fatalf("stored %+v", turns)
			}
		})
	}
}
