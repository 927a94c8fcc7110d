package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
	"github.com/tokencast/tokencast/internal/provider/upstream/upstreamtest"
)

const (
	testKey = "sk-test-SECRETKEY-0123456789"
	// rawMarker is text only the fake provider says; it must reach the log
	// (the error's cause) and never the user.
	rawMarker = "RAW-PROVIDER-TEXT-5e1f"
)

// seen is what the fake server received.
type seen struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// fakeServer answers every request with respond and reports what it saw.
func fakeServer(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan seen) {
	t.Helper()
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body}:
		default:
		}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// sse writes body as an event stream, flushing after every blank line so the
// client sees each event as it is written.
func sse(body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for part := range strings.SplitAfterSeq(body, "\n\n") {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}
}

func delta(text string) string {
	return `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + quote(text) + `},"finish_reason":null}]}` + "\n\n"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func finish(reason string) string {
	return `data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"` + reason + `"}]}` + "\n\n"
}

const (
	usageChunk = `data: {"id":"c1","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}` + "\n\n"
	done       = "data: [DONE]\n\n"
)

var conversation = chat.Prompt{
	Model:  "gpt-test",
	System: "You are terse.",
	Locale: "en",
	Messages: []chat.Message{
		{Role: chat.RoleUser, Text: "first question"},
		{Role: chat.RoleAssistant, Text: "first answer"},
		{Role: chat.RoleUser, Text: "second question"},
	},
}

func newProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// collect streams prompt and returns the answer's text parts.
func collect(ctx context.Context, p *Provider, prompt chat.Prompt) ([]string, chat.Final, error) {
	var got []string
	final, err := p.Stream(ctx, prompt, func(pt chat.Part) error {
		if pt.Kind == chat.PartText {
			got = append(got, pt.Text)
		}
		return nil
	})
	return got, final, err
}

func TestStreamAnswers(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		want  []string
		final chat.Final
	}{
		{
			name: "deltas, finish, usage, done",
			body: `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n" +
				delta("Hel") + delta("lo") + delta(" world") + finish("stop") + usageChunk + done,
			want:  []string{"Hel", "lo", " world"},
			final: chat.Final{Usage: chat.Usage{InputTokens: 11, OutputTokens: 3, TotalTokens: 14}, StopReason: "stop"},
		},
		{
			name:  "choices null and no usage chunk",
			body:  delta("a") + `data: {"choices":null}` + "\n\n" + delta("b") + finish("length") + done,
			want:  []string{"a", "b"},
			final: chat.Final{StopReason: "length"},
		},
		{
			name:  "finish_reason but the server closes without [DONE]",
			body:  delta("a") + finish("stop"),
			want:  []string{"a"},
			final: chat.Final{StopReason: "stop"},
		},
		{
			name:  "[DONE] without finish_reason",
			body:  delta("a") + done,
			want:  []string{"a"},
			final: chat.Final{},
		},
		{
			name: "CRLF, comments, no space after the colon, data split over lines, total left out",
			body: ": keep-alive\r\n\r\n" +
				"data:{\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"x\"}}]}\r\n\r\n" +
				`data: {"choices":[{"index":1,"delta":{"content":"other choice"}}]}` + "\r\n\r\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1}}` + "\r\n\r\n" +
				"data: [DONE]\r\n\r\n",
			want:  []string{"x"},
			final: chat.Final{Usage: chat.Usage{InputTokens: 2, OutputTokens: 1, TotalTokens: 3}, StopReason: "stop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, sse(tt.body))
			p := newProvider(t, Options{BaseURL: srv.URL + "/v1", APIKey: testKey})
			got, final, err := collect(t.Context(), p, conversation)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("deltas = %q, want %q", got, tt.want)
			}
			if final != tt.final {
				t.Errorf("final = %+v, want %+v", final, tt.final)
			}
		})
	}
}

func TestStreamSendsTheConversation(t *testing.T) {
	temp := 0.25
	tests := []struct {
		name       string
		opts       Options
		path       string
		query      string
		authHeader string
		authValue  string
		noHeader   string
	}{
		{
			name:       "openai",
			opts:       Options{APIKey: testKey, MaxTokens: 77, Temperature: &temp},
			path:       "/v1/chat/completions",
			authHeader: "Authorization",
			authValue:  "Bearer " + testKey,
			noHeader:   "api-key",
		},
		{
			name:       "azure",
			opts:       Options{APIKey: testKey, Azure: true, APIVersion: "2024-10-21", MaxTokens: 77, Temperature: &temp},
			path:       "/openai/deployments/gpt-test/chat/completions",
			query:      "api-version=2024-10-21",
			authHeader: "api-key",
			authValue:  testKey,
			noHeader:   "Authorization",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := fakeServer(t, sse(delta("ok")+finish("stop")+done))
			tt.opts.BaseURL = srv.URL
			if !tt.opts.Azure {
				tt.opts.BaseURL += "/v1/"
			}
			if _, _, err := collect(t.Context(), newProvider(t, tt.opts), conversation); err != nil {
				t.Fatalf("Stream: %v", err)
			}
			req := <-got
			if req.method != http.MethodPost || req.path != tt.path || req.query != tt.query {
				t.Errorf("request = %s %s?%s, want POST %s?%s", req.method, req.path, req.query, tt.path, tt.query)
			}
			if v := req.header.Get(tt.authHeader); v != tt.authValue {
				t.Errorf("%s = %q, want %q", tt.authHeader, v, tt.authValue)
			}
			if v := req.header.Get(tt.noHeader); v != "" {
				t.Errorf("%s = %q, want none", tt.noHeader, v)
			}
			if ct := req.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body struct {
				Model    string `json:"model"`
				Messages []struct {
					Role    string `json:"role"`
					Content string `json:"content"`
				} `json:"messages"`
				Stream        bool `json:"stream"`
				StreamOptions struct {
					IncludeUsage bool `json:"include_usage"`
				} `json:"stream_options"`
				MaxTokens   int      `json:"max_tokens"`
				Temperature *float64 `json:"temperature"`
			}
			if err := json.Unmarshal(req.body, &body); err != nil {
				t.Fatalf("request body %s: %v", req.body, err)
			}
			var gotMessages []string
			for _, m := range body.Messages {
				gotMessages = append(gotMessages, m.Role+": "+m.Content)
			}
			wantMessages := []string{
				"system: You are terse.",
				"user: first question",
				"assistant: first answer",
				"user: second question",
			}
			if !reflect.DeepEqual(gotMessages, wantMessages) {
				t.Errorf("messages = %q, want %q", gotMessages, wantMessages)
			}
			if strings.Contains(string(req.body), "tool") {
				t.Errorf("a prompt without tools sent some: %s", req.body)
			}
			if body.Model != "gpt-test" || !body.Stream || !body.StreamOptions.IncludeUsage || body.MaxTokens != 77 ||
				body.Temperature == nil || *body.Temperature != 0.25 {
				t.Errorf("body = %s", req.body)
			}
		})
	}
}

func TestStreamWithoutSystemOrKey(t *testing.T) {
	srv, got := fakeServer(t, sse(delta("ok")+finish("stop")+done))
	prompt := chat.Prompt{Model: "llama3", Messages: []chat.Message{{Role: chat.RoleUser, Text: "hi"}}}
	if _, _, err := collect(t.Context(), newProvider(t, Options{BaseURL: srv.URL}), prompt); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	req := <-got
	if v := req.header.Get("Authorization"); v != "" {
		t.Errorf("Authorization = %q, want none without a key", v)
	}
	var body map[string]any
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatal(err)
	}
	msgs, _ := body["messages"].([]any)
	if len(msgs) != 1 {
		t.Errorf("messages = %v, want only the user's", body["messages"])
	}
	for _, key := range []string{"max_tokens", "temperature"} {
		if _, ok := body[key]; ok {
			t.Errorf("body has %s though none was configured: %s", key, req.body)
		}
	}
}

func TestStreamFailures(t *testing.T) {
	httpError := func(status int, header http.Header) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			for k, v := range header {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error":{"message":"`+rawMarker+` Incorrect API key provided: `+testKey+`","type":"invalid_request_error"}}`)
		}
	}
	tests := []struct {
		name       string
		respond    func(http.ResponseWriter, *http.Request)
		code       string
		status     int
		retryAfter time.Duration
		wantDeltas []string
		// causeHasMarker: the log-side error keeps the provider's words.
		causeHasMarker bool
	}{
		{name: "401", respond: httpError(401, nil), code: upstream.CodeAuth, status: 401, causeHasMarker: true},
		{name: "403", respond: httpError(403, nil), code: upstream.CodeAuth, status: 403, causeHasMarker: true},
		{name: "429 Retry-After seconds", respond: httpError(429, http.Header{"Retry-After": {"7"}}),
			code: upstream.CodeThrottled, status: 429, retryAfter: 7 * time.Second, causeHasMarker: true},
		{name: "429 retry-after-ms", respond: httpError(429, http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"2"}}),
			code: upstream.CodeThrottled, status: 429, retryAfter: 1500 * time.Millisecond, causeHasMarker: true},
		{name: "429 without Retry-After", respond: httpError(429, nil), code: upstream.CodeThrottled, status: 429, causeHasMarker: true},
		{name: "500", respond: httpError(500, nil), code: upstream.CodeUnavailable, status: 500, causeHasMarker: true},
		{name: "503", respond: httpError(503, nil), code: upstream.CodeUnavailable, status: 503, causeHasMarker: true},
		{name: "400", respond: httpError(400, nil), code: chat.CodeProvider, status: 400, causeHasMarker: true},
		{name: "404", respond: httpError(404, nil), code: chat.CodeProvider, status: 404, causeHasMarker: true},
		{
			name:           "error chunk mid-stream",
			respond:        sse(delta("par") + `data: {"error":{"message":"` + rawMarker + `","type":"server_error"}}` + "\n\n"),
			code:           chat.CodeProvider,
			wantDeltas:     []string{"par"},
			causeHasMarker: true,
		},
		{
			name:           "error event mid-stream",
			respond:        sse(delta("par") + "event: error\ndata: " + rawMarker + "\n\n"),
			code:           chat.CodeProvider,
			wantDeltas:     []string{"par"},
			causeHasMarker: true,
		},
		{
			name:       "undecodable chunk",
			respond:    sse(delta("par") + "data: {" + rawMarker + "\n\n"),
			code:       chat.CodeProvider,
			wantDeltas: []string{"par"},
		},
		{
			name:       "stream ends without finish_reason or [DONE]",
			respond:    sse(delta("half an ") + delta("answer")),
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"half an ", "answer"},
		},
		{
			name:       "stream cut mid-event",
			respond:    sse(delta("half") + `data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"st`),
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"half"},
		},
		{
			name:    "empty 200 body",
			respond: sse(""),
			code:    upstream.CodeIncomplete,
		},
		{
			name: "connection dropped mid-stream",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				// Promise more than is sent so the client sees an unexpected EOF.
				w.Header().Set("Content-Length", "100000")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, delta("half"))
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
			},
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"half"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, tt.respond)
			p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
			got, final, err := collect(t.Context(), p, conversation)
			if err == nil {
				t.Fatalf("Stream succeeded with %+v, want %s", final, tt.code)
			}
			if !reflect.DeepEqual(got, tt.wantDeltas) {
				t.Errorf("deltas = %q, want %q", got, tt.wantDeltas)
			}
			cause := ""
			if tt.causeHasMarker {
				cause = rawMarker
			}
			upstreamtest.CheckFailure(t, err, upstreamtest.Failure{
				Code: tt.code, Status: tt.status, RetryAfter: tt.retryAfter,
				Hidden: []string{rawMarker, testKey}, CauseHas: cause,
			})
		})
	}
}

func TestStreamCancel(t *testing.T) {
	tests := []struct {
		name string
		// beforeWait is what the fake writes before it waits for the client
		// to go away.
		beforeWait string
	}{
		{name: "before the first byte"},
		{name: "mid-stream", beforeWait: delta("first")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived := make(chan struct{})
			cancelled := make(chan struct{})
			srv, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.beforeWait != "" {
					w.Header().Set("Content-Type", "text/event-stream")
					_, _ = io.WriteString(w, tt.beforeWait)
					w.(http.Flusher).Flush()
				}
				close(arrived)
				select {
				case <-r.Context().Done():
					close(cancelled)
				case <-time.After(30 * time.Second):
				}
			})
			p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
			upstreamtest.CheckCancel(t, arrived, cancelled, func(ctx context.Context) error {
				_, _, err := collect(ctx, p, conversation)
				return err
			})
		})
	}
}

func TestStreamStopsWhenEmitFails(t *testing.T) {
	srv, _ := fakeServer(t, sse(delta("a")+delta("b")+finish("stop")+done))
	p := newProvider(t, Options{BaseURL: srv.URL})
	stop := errors.New("subscriber gone")
	calls := 0
	// Not t.Context: its end at the test's end would hide a stream left open.
	_, err := p.Stream(context.Background(), conversation, func(chat.Part) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("err = %v after %d calls, want the emit error after 1", err, calls)
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		azure   bool
		want    Options
		wantErr string
	}{
		{name: "defaults", env: map[string]string{"OPENAI_API_KEY": "k"},
			want: Options{BaseURL: DefaultBaseURL, APIKey: "k"}},
		{name: "local server needs no key", env: map[string]string{"OPENAI_BASE_URL": "http://localhost:11434/v1"},
			want: Options{BaseURL: "http://localhost:11434/v1"}},
		{name: "default base needs a key", env: map[string]string{}, wantErr: "OPENAI_API_KEY"},
		{name: "bad base URL", env: map[string]string{"OPENAI_BASE_URL": "localhost:8080"}, wantErr: "OPENAI_BASE_URL"},
		{name: "azure", azure: true,
			env:  map[string]string{"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_API_VERSION": "2025-01-01-preview"},
			want: Options{BaseURL: "https://r.openai.azure.com", APIKey: "k", Azure: true, APIVersion: "2025-01-01-preview"}},
		{name: "azure default version", azure: true,
			env:  map[string]string{"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_API_KEY": "k"},
			want: Options{BaseURL: "https://r.openai.azure.com", APIKey: "k", Azure: true, APIVersion: DefaultAzureAPIVersion}},
		{name: "azure needs an endpoint", azure: true, env: map[string]string{"AZURE_OPENAI_API_KEY": "k"}, wantErr: "AZURE_OPENAI_ENDPOINT"},
		{name: "azure needs a key", azure: true, env: map[string]string{"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, wantErr: "AZURE_OPENAI_API_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			from := FromEnv
			if tt.azure {
				from = AzureFromEnv
			}
			got, err := from(getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("options = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for name, opts := range map[string]Options{
		"no base URL":         {},
		"relative base URL":   {BaseURL: "/v1"},
		"azure, no version":   {BaseURL: "https://r.openai.azure.com", Azure: true},
		"unsupported scheme:": {BaseURL: "ftp://example.com"},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}
