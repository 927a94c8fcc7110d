package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// fake serves Ollama's /api/chat with body as the NDJSON stream, and sends
// the request body it received to seen.
func fake(t *testing.T, status int, body string, seen chan<- []byte) *Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := io.ReadAll(r.Body)
		if r.URL.Path != "/api/chat" || err != nil || !json.Valid(req) {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		if seen != nil {
			seen <- req
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	opts, err := FromEnv(func(string) string { return srv.URL })
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxTokens = 64
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const okStream = `{"model":"llama3.1","message":{"role":"assistant","content":"Hel"},"done":false}
{"model":"llama3.1","message":{"role":"assistant","content":"lo."},"done":false}
{"model":"llama3.1","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}
`

var prompt = chat.Prompt{Model: "llama3.1", System: "Answer in English (en).", Messages: []chat.Message{
	{Role: chat.RoleUser, Text: "hi"}, {Role: chat.RoleAssistant, Text: "hello"}, {Role: chat.RoleUser, Text: "again"},
}}

func TestStream(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		body     string
		text     string
		code     string
		wantDone bool
	}{
		{"answer with counts", 200, okStream, "Hello.", "", true},
		{"cut off before done", 200, strings.Join(strings.Split(okStream, "\n")[:2], "\n") + "\n", "Hello.", chat.CodeIncomplete, false},
		{"cut mid-line", 200, okStream[:strings.Index(okStream, "\n")+30], "Hel", chat.CodeIncomplete, false},
		{"error line", 200, `{"message":{"content":"a"},"done":false}` + "\n" + `{"error":"RAW-SECRET model crashed"}` + "\n", "a", chat.CodeProvider, false},
		{"model not found", 404, `{"error":"RAW-SECRET model not found"}`, "", chat.CodeProvider, false},
		{"server down", 503, `busy`, "", chat.CodeProviderUnavailable, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan []byte, 1)
			p := fake(t, tc.status, tc.body, seen)
			var got strings.Builder
			final, err := p.Stream(context.Background(), prompt, func(pt chat.Part) error { s := pt.Text; got.WriteString(s); return nil })
			if got.String() != tc.text {
				t.Fatalf("text %q, want %q", got.String(), tc.text)
			}
			if tc.code == "" {
				if err != nil || final.Usage != (chat.Usage{InputTokens: 12, OutputTokens: 3, TotalTokens: 15}) || final.StopReason != "stop" {
					t.Fatalf("final %+v err %v", final, err)
				}
			} else {
				var ce *chat.Error
				if !errors.As(err, &ce) || ce.Code != tc.code || strings.Contains(ce.Message, "RAW-SECRET") {
					t.Fatalf("err %v, want code %s with a safe message", err, tc.code)
				}
			}
			var req map[string]any
			if err := json.Unmarshal(<-seen, &req); err != nil {
				t.Fatal(err)
			}
			msgs, _ := req["messages"].([]any)
			if req["model"] != "llama3.1" || req["stream"] != true || len(msgs) != 4 || msgs[0].(map[string]any)["role"] != "system" ||
				req["options"].(map[string]any)["num_predict"] != float64(64) {
				t.Fatalf("request %v", req)
			}
			if _, ok := req["tools"]; ok {
				t.Fatalf("a prompt without tools sent some: %v", req)
			}
		})
	}
}

func TestCancelClosesTheUpstreamRequest(t *testing.T) {
	closed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(closed)
	}))
	defer srv.Close()
	p, _ := New(Options{BaseURL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err := p.Stream(ctx, prompt, func(chat.Part) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the cancel", err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request stayed open")
	}
}

func TestFromEnv(t *testing.T) {
	for host, want := range map[string]string{"": DefaultHost, "0.0.0.0:1234": "http://0.0.0.0:1234", "https://gpu.example/": "https://gpu.example"} {
		opts, err := FromEnv(func(string) string { return host })
		if err != nil || opts.BaseURL != want {
			t.Errorf("OLLAMA_HOST=%q: %q %v, want %q", host, opts.BaseURL, err, want)
		}
	}
	if _, err := FromEnv(func(string) string { return "ftp://x" }); err == nil {
		t.Error("an ftp host was accepted")
	}
}

// FuzzDecode feeds arbitrary NDJSON: no panic, parts that keep the
// contract, and either a final answer or a coded error.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(okStream))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"message":{"content":"a"}}` + "\n" + `{"done":true}`))
	f.Add([]byte("\n\n{\n"))
	f.Add([]byte(toolStream))
	f.Add([]byte(parallelStream))
	f.Add([]byte(`{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}},{"function":{"name":"g","arguments":null}}]},"done":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var rules partRules
		_, err := decode(strings.NewReader(string(body)), nil, func(pt chat.Part) error {
			if err := rules.check(pt); err != nil {
				t.Fatal(err)
			}
			return nil
		})
		var ce *chat.Error
		if err != nil && (!errors.As(err, &ce) || ce.Code == "") {
			t.Fatalf("uncoded error %v for %q", err, body)
		}
		if len(rules.open) > 0 {
			t.Fatalf("calls left open: %v", rules.open)
		}
	})
}
