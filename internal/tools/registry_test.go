package tools_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/tools"
	"github.com/tokencast/tokencast/internal/tools/toolstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newRegistry starts a registry on servers and closes it when the test ends
// (before the test's servers stop: cleanups run last-registered first).
func newRegistry(t *testing.T, servers ...tools.Server) *tools.Registry {
	t.Helper()
	return newLoggedRegistry(t, nil, servers...)
}

func newLoggedRegistry(t *testing.T, log *slog.Logger, servers ...tools.Server) *tools.Registry {
	t.Helper()
	r, err := tools.New(t.Context(), servers, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// lockedBuffer is a log destination for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func names(specs []chat.ToolSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func echo(_ context.Context, args map[string]any) (string, error) {
	return fmt.Sprint(args["text"]), nil
}

// remote is a server that needs a key and offers text, failing, structured
// and multi-part tools.
func remote(t *testing.T) (url string, calls func(string) int) {
	return toolstest.ServerWith(t, toolstest.Options{
		Header: "X-Api-Key", Value: "s3cret-key",
		Setup: func(s *mcp.Server) {
			s.AddTool(&mcp.Tool{Name: "weather", InputSchema: json.RawMessage(`{"type":"object"}`)},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{StructuredContent: map[string]any{"city": "Paris", "celsius": 21}}, nil
				})
			s.AddTool(&mcp.Tool{Name: "lines", InputSchema: json.RawMessage(`{"type":"object"}`)},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{
						Content: []mcp.Content{
							&mcp.TextContent{Text: "one"},
							&mcp.ImageContent{Data: []byte("png"), MIMEType: "image/png"},
							&mcp.TextContent{Text: "two"},
						},
						StructuredContent: map[string]any{"ignored": true},
					}, nil
				})
			s.AddTool(&mcp.Tool{Name: "picture", InputSchema: json.RawMessage(`{"type":"object"}`)},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.ImageContent{Data: []byte("png"), MIMEType: "image/png"}}}, nil
				})
		},
	},
		toolstest.Tool{Name: "echo", Description: "Says the text back.", Handler: echo},
		toolstest.Tool{Name: "fail", Handler: func(context.Context, map[string]any) (string, error) {
			return "", errors.New("no such document")
		}},
	)
}

func TestRemoteCall(t *testing.T) {
	url, calls := remote(t)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newLoggedRegistry(t, log, tools.Server{Name: "search", URL: url, Headers: map[string]string{"x-api-key": "s3cret-key"}})
	t.Cleanup(func() {
		if strings.Contains(logs.String(), "s3cret") {
			t.Errorf("the logs show a header value:\n%s", logs.String())
		}
	})

	specs, err := r.Specs([]string{"search.*"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(specs), []string{"echo", "fail", "lines", "picture", "weather"}; !slices.Equal(got, want) {
		// The SDK server lists tools by name.
		t.Errorf("Specs(search.*) = %v, want %v", got, want)
	}
	if specs[0].Description != "Says the text back." || !json.Valid(specs[0].InputSchema) {
		t.Errorf("echo spec = %+v", specs[0])
	}

	tests := []struct {
		tool, input string
		want        tools.Result
	}{
		{"echo", `{"text":"hello"}`, tools.Result{Output: "hello"}},
		{"echo", ``, tools.Result{Output: "<nil>"}},
		{"echo", `null`, tools.Result{Output: "<nil>"}},
		{"search.echo", `{"text":"qualified"}`, tools.Result{Output: "qualified"}},
		{"fail", `{}`, tools.Result{Output: "no such document", IsError: true}},
		{"weather", `{}`, tools.Result{Output: `{"celsius":21,"city":"Paris"}`}},
		{"lines", `{}`, tools.Result{Output: "one\ntwo"}},
		{"picture", `{}`, tools.Result{Output: "(the tool returned no text: image image/png)"}},
		// What a model wrote that is not an object is its error to fix; the
		// tool is not called.
		{"echo", `"hello"`, tools.Result{Output: "the tool input must be a JSON object", IsError: true}},
		{"echo", `{"text":`, tools.Result{Output: "the tool input must be a JSON object", IsError: true}},
	}
	for _, tt := range tests {
		t.Run(tt.tool+" "+tt.input, func(t *testing.T) {
			got, err := r.Call(t.Context(), tt.tool, json.RawMessage(tt.input))
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if got != tt.want {
				t.Errorf("Call = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := calls("echo"); got != 4 {
		t.Errorf("echo ran %d times, want 4", got)
	}
	if got := calls("fail"); got != 1 {
		t.Errorf("fail ran %d times, want 1", got)
	}

	if _, err := r.Call(t.Context(), "nope", nil); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Call(nope) error = %v, want one naming the tool", err)
	}
	if _, err := r.Call(t.Context(), "search.nope", nil); err == nil || !strings.Contains(err.Error(), `"search.nope"`) {
		t.Errorf("Call(search.nope) error = %v, want one naming the tool", err)
	}
}

func TestSpecs(t *testing.T) {
	url, _ := toolstest.Server(t,
		toolstest.Tool{Name: "lookup", Handler: echo},
		toolstest.Tool{Name: "delete_doc", Handler: echo},
	)
	r := newRegistry(t, tools.Server{Name: "search", URL: url})
	tests := []struct {
		patterns []string
		want     []string
		err      string
	}{
		{patterns: nil, want: nil},
		// A server lists its tools in its own order (the SDK's: by name).
		{patterns: []string{"builtin.*"}, want: []string{"calculator", "clock"}},
		{patterns: []string{"builtin.calculator", "search.lookup"}, want: []string{"calculator", "lookup"}},
		{patterns: []string{"search.*", "builtin.clock"}, want: []string{"delete_doc", "lookup", "clock"}},
		// Overlapping patterns give each tool once.
		{patterns: []string{"builtin.clock", "builtin.*", "builtin.clock"}, want: []string{"clock", "calculator"}},
		{patterns: []string{"mail.send"}, err: `no mcp server "mail"`},
		{patterns: []string{"search.send"}, err: `mcp server "search" has no tool "send"`},
		{patterns: []string{"lookup"}, err: `tool pattern "lookup"`},
		{patterns: []string{"search."}, err: `tool pattern "search."`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.patterns, ","), func(t *testing.T) {
			specs, err := r.Specs(tt.patterns)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Specs error = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(specs); !slices.Equal(got, tt.want) {
				t.Errorf("Specs = %v, want %v", got, tt.want)
			}
		})
	}
}

// A tool list longer than a page arrives whole.
func TestPagination(t *testing.T) {
	var list []toolstest.Tool
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("tool_%d", i)
		list = append(list, toolstest.Tool{Name: name, Handler: echo})
		want = append(want, name)
	}
	url, calls := toolstest.ServerWith(t, toolstest.Options{PageSize: 2}, list...)
	r := newRegistry(t, tools.Server{Name: "paged", URL: url})
	specs, err := r.Specs([]string{"paged.*"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(specs); !slices.Equal(got, want) {
		t.Errorf("Specs = %v, want %v", got, want)
	}
	if _, err := r.Call(t.Context(), "tool_6", json.RawMessage(`{"text":"last"}`)); err != nil || calls("tool_6") != 1 {
		t.Errorf("the last page's tool: err %v, calls %d", err, calls("tool_6"))
	}
}

// Two servers offering a tool of the same name may both be configured; a
// model may not be offered both, and a bare name cannot say which is meant.
func TestCollision(t *testing.T) {
	urlA, callsA := toolstest.Server(t, toolstest.Tool{Name: "lookup", Handler: echo})
	urlB, callsB := toolstest.Server(t, toolstest.Tool{Name: "lookup", Handler: echo})
	r := newRegistry(t, tools.Server{Name: "alpha", URL: urlA}, tools.Server{Name: "beta", URL: urlB})

	for _, patterns := range [][]string{{"alpha.lookup", "beta.lookup"}, {"alpha.*", "beta.*"}} {
		_, err := r.Specs(patterns)
		if err == nil || !strings.Contains(err.Error(), "alpha") || !strings.Contains(err.Error(), "beta") {
			t.Errorf("Specs(%v) error = %v, want one naming alpha and beta", patterns, err)
		}
	}
	if _, err := r.Specs([]string{"beta.*", "builtin.*"}); err != nil {
		t.Errorf("Specs(beta.*, builtin.*): %v", err)
	}
	if _, err := r.Call(t.Context(), "lookup", nil); err == nil || !strings.Contains(err.Error(), "alpha") {
		t.Errorf("Call(lookup) error = %v, want one naming both servers", err)
	}
	name, err := r.Resolve([]string{"builtin.*", "beta.*"}, "lookup")
	if err != nil || name != "beta.lookup" {
		t.Fatalf("Resolve = %q, %v; want beta.lookup", name, err)
	}
	if _, err := r.Resolve([]string{"builtin.*"}, "lookup"); err == nil {
		t.Errorf("Resolve of a tool the patterns do not select: no error")
	}
	if _, err := r.Call(t.Context(), name, json.RawMessage(`{"text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if callsA("lookup") != 0 || callsB("lookup") != 1 {
		t.Errorf("calls alpha %d, beta %d; want 0, 1", callsA("lookup"), callsB("lookup"))
	}
}

// New refuses what it cannot serve, naming the server and never showing
// its headers.
func TestNewRefuses(t *testing.T) {
	keyed, _ := toolstest.ServerWith(t, toolstest.Options{Header: "Authorization", Value: "Bearer right"},
		toolstest.Tool{Name: "lookup", Handler: echo})
	dotted, _ := toolstest.Server(t, toolstest.Tool{Name: "docs.search", Handler: echo})
	gone, _ := toolstest.Server(t)
	// A server that has stopped.
	stopped := httptest.NewServer(http.NotFoundHandler())
	stopped.Close()

	tests := []struct {
		name    string
		servers []tools.Server
		want    string
	}{
		{"missing header", []tools.Server{{Name: "search", URL: keyed}}, `"search"`},
		{"wrong header", []tools.Server{{Name: "search", URL: keyed, Headers: map[string]string{"Authorization": "Bearer wrong-secret"}}}, `"search"`},
		{"unreachable", []tools.Server{{Name: "offline", URL: stopped.URL}}, `"offline"`},
		{"tool name a model refuses", []tools.Server{{Name: "docs", URL: dotted}}, `"docs.search"`},
		{"reserved name", []tools.Server{{Name: "builtin", URL: keyed}}, `"builtin"`},
		{"twice", []tools.Server{{Name: "a", URL: gone}, {Name: "a", URL: gone}}, `"a"`},
		{"bad name", []tools.Server{{Name: "a.b", URL: gone}}, `"a.b"`},
		{"bad url", []tools.Server{{Name: "files", URL: "file:///etc"}}, `"files"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tools.New(t.Context(), tt.servers, nil)
			if err == nil {
				r.Close()
				t.Fatal("New: no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "wrong-secret") {
				t.Errorf("error %q shows a header", err)
			}
		})
	}
}

// Cancelling a call stops it: the caller gets its cancel back at once and
// the tool, on the server, sees its context done.
func TestCancel(t *testing.T) {
	started, stopped := make(chan struct{}), make(chan struct{})
	url, _ := toolstest.Server(t, toolstest.Tool{Name: "slow", Handler: func(ctx context.Context, _ map[string]any) (string, error) {
		close(started)
		<-ctx.Done()
		close(stopped)
		return "", ctx.Err()
	}})
	r := newRegistry(t, tools.Server{Name: "slowpoke", URL: url})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	_, err := r.Call(ctx, "slow", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Call error = %v, want context.Canceled", err)
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the tool never saw its call cancelled")
	}
	// The session still serves.
	if _, err := r.Call(t.Context(), "clock", nil); err != nil {
		t.Errorf("a call after the cancel: %v", err)
	}
}

// A server that dropped our session (restart, idle timeout) is reconnected
// to; the call that found out is not repeated, since the registry cannot
// know whether it ran.
func TestReconnect(t *testing.T) {
	var server *mcp.Server
	url, calls := toolstest.ServerWith(t, toolstest.Options{Setup: func(s *mcp.Server) { server = s }},
		toolstest.Tool{Name: "echo", Handler: echo})
	r := newRegistry(t, tools.Server{Name: "flaky", URL: url})
	call := func() (tools.Result, error) {
		return r.Call(t.Context(), "echo", json.RawMessage(`{"text":"hi"}`))
	}
	if _, err := call(); err != nil {
		t.Fatal(err)
	}
	for session := range server.Sessions() {
		session.Close()
	}
	if _, err := call(); !errors.Is(err, mcp.ErrSessionMissing) {
		t.Errorf("call on the dropped session: error %v, want mcp.ErrSessionMissing", err)
	}
	if got, err := call(); err != nil || got.Output != "hi" {
		t.Errorf("call after the drop = %+v, %v; want hi", got, err)
	}
	if got := calls("echo"); got != 2 {
		t.Errorf("echo ran %d times, want 2", got)
	}
}

// Close ends every session and leaves nothing running, even with a call
// cancelled just before.
func TestCloseLeavesNothing(t *testing.T) {
	url, _ := toolstest.Server(t, toolstest.Tool{Name: "echo", Handler: echo})
	before := goleak.IgnoreCurrent()
	r, err := tools.New(t.Context(), []tools.Server{{Name: "one", URL: url}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, input := range map[string]string{"echo": `{"text":"a"}`, "clock": `{}`, "calculator": `{"expression":"1+1"}`} {
		if _, err := r.Call(t.Context(), name, json.RawMessage(input)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if _, err := r.Call(t.Context(), "echo", nil); err == nil {
		t.Errorf("Call after Close: no error")
	}
	goleak.VerifyNone(t, before)
}

// Close does not wait for tools to finish: a call still running fails at
// once, and nothing is left running once the server lets the tool go.
func TestCloseDuringCall(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	url, calls := toolstest.Server(t, toolstest.Tool{Name: "slow", Handler: func(ctx context.Context, _ map[string]any) (string, error) {
		close(started)
		select {
		case <-ctx.Done():
		case <-release:
		}
		return "late", nil
	}})
	r, err := tools.New(t.Context(), []tools.Server{{Name: "slowpoke", URL: url}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan error, 1)
	go func() {
		_, err := r.Call(t.Context(), "slow", nil)
		called <- err
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	if err := <-called; err == nil || !strings.Contains(err.Error(), "closed") || errors.Is(err, context.Canceled) {
		t.Errorf("the running call: error %v, want one saying the registry closed", err)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := r.Call(t.Context(), "slow", nil); err == nil || calls("slow") != 1 {
		t.Errorf("a call after Close: error %v, %d runs; want an error and 1 run", err, calls("slow"))
	}
}
