// Package toolstest starts MCP servers for tests: the official SDK's own
// server, over Streamable HTTP on a loopback port, with simple tools that
// count their calls. Tests of anything that runs tools (the registry, the
// agent loop) point a real client at it.
//
//	url, calls := toolstest.Server(t, toolstest.Tool{
//		Name: "lookup",
//		Handler: func(ctx context.Context, args map[string]any) (string, error) {
//			return "found " + args["q"].(string), nil
//		},
//	})
//	reg, err := tools.New(ctx, []tools.Server{{Name: "search", URL: url}}, nil)
//	…
//	if calls("lookup") != 1 { … }
package toolstest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool is a tool that takes any JSON object and answers text.
type Tool struct {
	Name        string
	Description string
	// Handler runs the tool. Its error is the tool's failure (a result with
	// isError set and the error's text), as a model would be shown it.
	// ctx is done when the client cancels the call.
	Handler func(ctx context.Context, args map[string]any) (string, error)
}

// Options are what a test may ask of the server beyond its tools.
type Options struct {
	// Header, when set, must arrive with every request with the value
	// Value; a request without it is refused with 401 Unauthorized.
	Header, Value string
	// PageSize, when set, is how many tools one tools/list page holds.
	PageSize int
	// Setup, when set, is given the SDK server before it serves, to add
	// what Tool cannot express (structured results, schemas, images).
	Setup func(*mcp.Server)
}

// Server starts an MCP server with tools for the test's lifetime and
// returns its URL and a count of each tool's calls so far.
func Server(t testing.TB, tools ...Tool) (url string, calls func(name string) int) {
	t.Helper()
	return ServerWith(t, Options{}, tools...)
}

// ServerWith is Server with options.
func ServerWith(t testing.TB, opts Options, tools ...Tool) (url string, calls func(name string) int) {
	t.Helper()
	var mu sync.Mutex
	counts := make(map[string]int)
	server := mcp.NewServer(&mcp.Implementation{Name: "toolstest", Version: "1"}, &mcp.ServerOptions{PageSize: opts.PageSize})
	for _, tool := range tools {
		server.AddTool(&mcp.Tool{
			Name:        tool.Name,
			Description: tool.Description,
			InputSchema: json.RawMessage(`{"type":"object"}`),
		}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			mu.Lock()
			counts[tool.Name]++
			mu.Unlock()
			var args map[string]any
			if len(req.Params.Arguments) > 0 {
				if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
					return nil, err
				}
			}
			out, err := tool.Handler(ctx, args)
			if err != nil {
				res := &mcp.CallToolResult{}
				res.SetError(err)
				return res, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out}}}, nil
		})
	}
	if opts.Setup != nil {
		opts.Setup(server)
	}
	var handler http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	if opts.Header != "" {
		next := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(opts.Header) != opts.Value {
				http.Error(w, "missing or wrong "+opts.Header, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(func() {
		srv.Close()
		for session := range server.Sessions() {
			_ = session.Close()
		}
	})
	return srv.URL, func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[name]
	}
}
