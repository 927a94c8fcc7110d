package anthropic

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
	testKey = "sk-ant-test-SECRETKEY-0123456789"
	// rawMarker is text only the fake provider says; it must reach the log
	// (the error's cause) and never the user.
	rawMarker = "RAW-PROVIDER-TEXT-9c2d"
)

// seen is what the fake server received.
type seen struct {
	method, path string
	header       http.Header
	body         []byte
}

// fakeServer answers every request with respond and reports what it saw.
func fakeServer(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan seen) {
	t.Helper()
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- seen{r.Method, r.URL.Path, r.Header.Clone(), body}:
		default:
		}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// sse writes body as an event stream, flushing after every event.
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

// ev is one event as the Messages API writes it: named, with a JSON body
// that repeats the name as its type.
func ev(name, data string) string {
	return "event: " + name + "\ndata: " + data + "\n\n"
}

func start(usage string) string {
	return ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":`+usage+`}}`)
}

func text(s string) string {
	b, _ := json.Marshal(s)
	return ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+string(b)+`}}`)
}

func messageDelta(stop string, outputTokens string) string {
	return ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"`+stop+`","stop_sequence":null},"usage":{"output_tokens":`+outputTokens+`}}`)
}

var (
	blockStart  = ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	blockStop   = ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ping        = ev("ping", `{"type": "ping"}`)
	messageStop = ev("message_stop", `{"type":"message_stop"}`)
)

var conversation = chat.Prompt{
	Model:  "claude-test",
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

// collect streams prompt and returns the answer text as it arrived; parts
// of other kinds are left out.
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
			name: "text deltas, cumulative output tokens",
			body: start(`{"input_tokens":25,"output_tokens":1}`) + blockStart + ping +
				text("Hel") + text("lo") + text(" world") + blockStop +
				messageDelta("end_turn", "15") + messageStop,
			want:  []string{"Hel", "lo", " world"},
			final: chat.Final{Usage: chat.Usage{InputTokens: 25, OutputTokens: 15, TotalTokens: 40}, StopReason: "end_turn"},
		},
		{
			name: "cached input counts; reasoning is not answer text; unknown events are skipped",
			body: start(`{"input_tokens":5,"cache_creation_input_tokens":7,"cache_read_input_tokens":100,"output_tokens":1}`) +
				ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}`) +
				ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}`) +
				ev("content_block_stop", `{"type":"content_block_stop","index":0}`) +
				ev("brand_new_event", `{"type":"brand_new_event","text":"no"}`) +
				text("yes") +
				messageDelta("max_tokens", "2") + messageStop,
			want: []string{"yes"},
			final: chat.Final{Usage: chat.Usage{InputTokens: 112, OutputTokens: 2, TotalTokens: 114,
				CacheReadTokens: 100, CacheWriteTokens: 7}, StopReason: "max_tokens"},
		},
		{
			name: "message_delta's input count, when given, is the final one",
			body: start(`{"input_tokens":10,"output_tokens":1}`) + text("a") +
				ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":6}}`) +
				messageStop,
			want:  []string{"a"},
			final: chat.Final{Usage: chat.Usage{InputTokens: 15, OutputTokens: 6, TotalTokens: 21, CacheReadTokens: 3}, StopReason: "end_turn"},
		},
		{
			name:  "no usage anywhere",
			body:  ev("message_start", `{"type":"message_start","message":{}}`) + text("a") + messageStop,
			want:  []string{"a"},
			final: chat.Final{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, sse(tt.body))
			p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
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
	temp := 0.5
	tests := []struct {
		name          string
		opts          Options
		prompt        chat.Prompt
		wantMaxTokens int
		wantSystem    any
		wantMessages  []message
		wantTemp      any
	}{
		{
			name:          "system, all turns, configured caps",
			opts:          Options{MaxTokens: 300, Temperature: &temp},
			prompt:        conversation,
			wantMaxTokens: 300,
			wantSystem:    "You are terse.",
			wantMessages: []message{
				{"user", "first question"},
				{"assistant", "first answer"},
				{"user", "second question"},
			},
			wantTemp: 0.5,
		},
		{
			name:          "defaults: max_tokens 1024, no system, no temperature",
			prompt:        chat.Prompt{Model: "claude-test", Messages: []chat.Message{{Role: chat.RoleUser, Text: "hi"}}},
			wantMaxTokens: DefaultMaxTokens,
			wantMessages:  []message{{"user", "hi"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := fakeServer(t, sse(start(`{"input_tokens":1}`)+text("ok")+messageDelta("end_turn", "1")+messageStop))
			tt.opts.BaseURL = srv.URL + "/"
			tt.opts.APIKey = testKey
			if _, _, err := collect(t.Context(), newProvider(t, tt.opts), tt.prompt); err != nil {
				t.Fatalf("Stream: %v", err)
			}
			req := <-got
			if req.method != http.MethodPost || req.path != "/v1/messages" {
				t.Errorf("request = %s %s, want POST /v1/messages", req.method, req.path)
			}
			for header, want := range map[string]string{
				"x-api-key":         testKey,
				"anthropic-version": "2023-06-01",
				"Content-Type":      "application/json",
				"Authorization":     "",
			} {
				if v := req.header.Get(header); v != want {
					t.Errorf("%s = %q, want %q", header, v, want)
				}
			}
			var body struct {
				Model       string    `json:"model"`
				MaxTokens   int       `json:"max_tokens"`
				Messages    []message `json:"messages"`
				Stream      bool      `json:"stream"`
				System      any       `json:"system"`
				Temperature any       `json:"temperature"`
			}
			if err := json.Unmarshal(req.body, &body); err != nil {
				t.Fatalf("request body %s: %v", req.body, err)
			}
			if !reflect.DeepEqual(body.Messages, tt.wantMessages) {
				t.Errorf("messages = %+v, want %+v", body.Messages, tt.wantMessages)
			}
			if body.Model != "claude-test" || !body.Stream || body.MaxTokens != tt.wantMaxTokens ||
				body.System != tt.wantSystem || body.Temperature != tt.wantTemp {
				t.Errorf("body = %s", req.body)
			}
		})
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
			_, _ = io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"`+rawMarker+` invalid x-api-key `+testKey+`"}}`)
		}
	}
	errorEvent := func(errType string) string {
		return ev("error", `{"type":"error","error":{"type":"`+errType+`","message":"`+rawMarker+`"}}`)
	}
	head := start(`{"input_tokens":3,"output_tokens":1}`) + blockStart + text("par")
	tests := []struct {
		name           string
		respond        func(http.ResponseWriter, *http.Request)
		code           string
		status         int
		retryAfter     time.Duration
		wantDeltas     []string
		causeHasMarker bool
	}{
		{name: "401", respond: httpError(401, nil), code: upstream.CodeAuth, status: 401, causeHasMarker: true},
		{name: "403", respond: httpError(403, nil), code: upstream.CodeAuth, status: 403, causeHasMarker: true},
		{name: "429 with Retry-After", respond: httpError(429, http.Header{"Retry-After": {"12"}}),
			code: upstream.CodeThrottled, status: 429, retryAfter: 12 * time.Second, causeHasMarker: true},
		{name: "500", respond: httpError(500, nil), code: upstream.CodeUnavailable, status: 500, causeHasMarker: true},
		{name: "529 overloaded", respond: httpError(529, nil), code: upstream.CodeUnavailable, status: 529, causeHasMarker: true},
		{name: "400", respond: httpError(400, nil), code: chat.CodeProvider, status: 400, causeHasMarker: true},
		{name: "413", respond: httpError(413, nil), code: chat.CodeProvider, status: 413, causeHasMarker: true},
		{name: "overloaded_error event", respond: sse(head + errorEvent("overloaded_error")),
			code: upstream.CodeUnavailable, wantDeltas: []string{"par"}, causeHasMarker: true},
		{name: "api_error event", respond: sse(head + errorEvent("api_error")),
			code: upstream.CodeUnavailable, wantDeltas: []string{"par"}, causeHasMarker: true},
		{name: "rate_limit_error event", respond: sse(head + errorEvent("rate_limit_error")),
			code: upstream.CodeThrottled, wantDeltas: []string{"par"}, causeHasMarker: true},
		{name: "invalid_request_error event", respond: sse(head + errorEvent("invalid_request_error")),
			code: chat.CodeProvider, wantDeltas: []string{"par"}, causeHasMarker: true},
		{name: "error event that is not JSON", respond: sse(head + ev("error", rawMarker)),
			code: chat.CodeProvider, wantDeltas: []string{"par"}, causeHasMarker: true},
		{name: "undecodable event", respond: sse(head + ev("content_block_delta", "{"+rawMarker)),
			code: chat.CodeProvider, wantDeltas: []string{"par"}},
		{
			name:       "stop_reason arrives but message_stop never does",
			respond:    sse(head + blockStop + messageDelta("end_turn", "2")),
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"par"},
		},
		{
			name:       "stream cut mid-event",
			respond:    sse(head + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"del"),
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"par"},
		},
		{name: "empty 200 body", respond: sse(""), code: upstream.CodeIncomplete},
		{
			name: "connection dropped mid-stream",
			respond: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				// Promise more than is sent so the client sees an unexpected EOF.
				w.Header().Set("Content-Length", "100000")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, head)
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
			},
			code:       upstream.CodeIncomplete,
			wantDeltas: []string{"par"},
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
			// Once message_start said so, the input tokens were spent:
			// the failure still reports them (and the output tokens last
			// reported), for billing.
			if tt.wantDeltas != nil && (final.Usage.InputTokens != 3 || final.Usage.OutputTokens < 1) {
				t.Errorf("usage %+v, want message_start's 3 input tokens and the output tokens reported", final.Usage)
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
		name       string
		beforeWait string
	}{
		{name: "before the first byte"},
		{name: "mid-stream", beforeWait: start(`{"input_tokens":1}`) + text("first")},
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
	srv, _ := fakeServer(t, sse(start(`{}`)+text("a")+text("b")+messageDelta("end_turn", "2")+messageStop))
	p := newProvider(t, Options{BaseURL: srv.URL, APIKey: testKey})
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
		want    Options
		wantErr string
	}{
		{name: "defaults", env: map[string]string{"ANTHROPIC_API_KEY": "k"},
			want: Options{BaseURL: DefaultBaseURL, APIKey: "k"}},
		{name: "base URL", env: map[string]string{"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9000"},
			want: Options{BaseURL: "http://127.0.0.1:9000", APIKey: "k"}},
		{name: "key required", env: map[string]string{}, wantErr: "ANTHROPIC_API_KEY"},
		{name: "bad base URL", env: map[string]string{"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "api.anthropic.com"}, wantErr: "ANTHROPIC_BASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) string { return tt.env[k] })
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

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, base := range []string{"", "/v1", "ftp://example.com"} {
		if _, err := New(Options{BaseURL: base}); err == nil {
			t.Errorf("New accepted base URL %q", base)
		}
	}
}
