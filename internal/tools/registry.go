// Package tools is where an agent's tools come from: the MCP servers named
// in the config, reached over Streamable HTTP with the official MCP Go SDK,
// and a built-in server that answers through the same MCP client code, so
// the embedded default shows a real run on the real path.
//
// A Registry connects to every server at start, keeps one session per
// server, and offers a model the tools its config selects ("server.tool" or
// "server.*") under their bare names.
package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/errgroup"

	"github.com/tokencast/tokencast/internal/chat"
)

// Builtin is the name of the server every registry has: tokencast's own
// tools (clock, calculator).
const Builtin = "builtin"

// Server is an MCP server declared in the config file, reached over
// Streamable HTTP.
type Server struct {
	// Name is how the config and the tool patterns call the server.
	Name string
	// URL is the server's Streamable HTTP endpoint.
	URL string
	// Headers are sent with every request to the server, their values
	// already resolved by the caller (from the environment, never from a
	// client). They are never logged.
	Headers map[string]string
}

// Result is what a tool call returned.
type Result struct {
	// Output is the text of the result's text items, one per line, or the
	// JSON of its structured content when it has no text.
	Output string
	// IsError marks the tool's own failure, for the model to read and
	// perhaps correct; it is not a Go error.
	IsError bool
}

// Registry holds the sessions to an agent's MCP servers and the tools they
// offer. It is safe for concurrent use.
type Registry struct {
	log *slog.Logger
	// closing is done when Close begins: calls still running stop, since
	// a session waits for its calls before it closes.
	closing   context.Context
	stopCalls context.CancelFunc
	// mu guards closed; running counts the calls under way.
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
	// transport carries every remote server's requests, so that Close can
	// drop its idle connections.
	transport *http.Transport
	// conns are the servers in config order, the built-in one first.
	conns  []*conn
	byName map[string]*conn
	// offers are the tools by bare name: more than one when servers collide.
	offers map[string][]*tool
}

// tool is one tool of one server.
type tool struct {
	conn *conn
	spec chat.ToolSpec
}

// qualified is the tool's "server.tool" name.
func (t *tool) qualified() string { return t.conn.name + "." + t.spec.Name }

// validName is what a model accepts as a tool name; server names follow it
// too, so that "server.tool" splits at its only dot.
var validName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// New connects to the built-in server and to servers, and lists their
// tools. A server that cannot be reached, or that offers a tool whose name
// a model would refuse, is an error naming it. ctx bounds the start only.
func New(ctx context.Context, servers []Server, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkServers(servers); err != nil {
		return nil, err
	}
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("http.DefaultTransport is not an *http.Transport")
	}
	closing, stopCalls := context.WithCancel(context.Background())
	r := &Registry{
		log:       log,
		closing:   closing,
		stopCalls: stopCalls,
		transport: base.Clone(),
		byName:    make(map[string]*conn),
		offers:    make(map[string][]*tool),
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "tokencast", Version: "1"}, &mcp.ClientOptions{
		Logger: log,
		// We offer the servers nothing of ours: no roots, no sampling, no
		// elicitation.
		Capabilities: &mcp.ClientCapabilities{},
		KeepAlive:    keepAlive,
	})
	r.conns = append(r.conns, newConn(Builtin, builtinDialer(client), log))
	for _, s := range servers {
		r.conns = append(r.conns, newConn(s.Name, remoteDialer(client, s, r.transport), log))
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, c := range r.conns {
		g.Go(func() error { return c.start(gctx) })
	}
	if err := g.Wait(); err != nil {
		r.Close()
		return nil, err
	}
	for _, c := range r.conns {
		r.byName[c.name] = c
		for _, spec := range c.tools {
			r.offers[spec.Name] = append(r.offers[spec.Name], &tool{conn: c, spec: spec})
		}
		log.Info("mcp server ready", "server", c.name, "tools", len(c.tools))
	}
	return r, nil
}

// checkServers refuses what would make the config ambiguous or a URL we
// cannot dial, before any connection is tried.
func checkServers(servers []Server) error {
	seen := map[string]bool{Builtin: true}
	for _, s := range servers {
		if !validName.MatchString(s.Name) {
			return fmt.Errorf("mcp server %q: a name must match %s", s.Name, validName)
		}
		if seen[s.Name] {
			if s.Name == Builtin {
				return fmt.Errorf("mcp server %q: the name is reserved for the built-in tools", s.Name)
			}
			return fmt.Errorf("mcp server %q is declared twice", s.Name)
		}
		seen[s.Name] = true
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("mcp server %q: url must be an http(s) URL", s.Name)
		}
	}
	return nil
}

// Specs returns the tools that patterns select, each "server.tool" or
// "server.*", in the order the patterns name them. An unknown server or
// tool is an error naming it; so is a selection in which two servers offer
// a tool of the same name, since a model would see one name for both.
func (r *Registry) Specs(patterns []string) ([]chat.ToolSpec, error) {
	selected, err := r.selection(patterns)
	if err != nil {
		return nil, err
	}
	specs := make([]chat.ToolSpec, 0, len(selected))
	for _, t := range selected {
		specs = append(specs, t.spec)
	}
	return specs, nil
}

// Resolve returns the "server.tool" name of the tool that a model offered
// the tools of patterns calls name. Call needs it only when two servers
// offer a tool of that name (to different models).
func (r *Registry) Resolve(patterns []string, name string) (string, error) {
	selected, err := r.selection(patterns)
	if err != nil {
		return "", err
	}
	for _, t := range selected {
		if t.spec.Name == name {
			return t.qualified(), nil
		}
	}
	return "", fmt.Errorf("tool %q is not among %s", name, strings.Join(patterns, ", "))
}

// selection is the tools patterns select, without repeats.
func (r *Registry) selection(patterns []string) ([]*tool, error) {
	var selected []*tool
	chosen := make(map[string]*tool)
	for _, p := range patterns {
		server, name, ok := strings.Cut(p, ".")
		if !ok || server == "" || name == "" {
			return nil, fmt.Errorf("tool pattern %q: want server.tool or server.*", p)
		}
		c := r.byName[server]
		if c == nil {
			return nil, fmt.Errorf("tool pattern %q: no mcp server %q", p, server)
		}
		matched := false
		for _, spec := range c.tools {
			if name != "*" && name != spec.Name {
				continue
			}
			matched = true
			t := r.offer(c, spec.Name)
			if prev, ok := chosen[spec.Name]; ok {
				if prev != t {
					return nil, fmt.Errorf("tool %q is offered by both %s and %s: select one", spec.Name, prev.conn.name, c.name)
				}
				continue
			}
			chosen[spec.Name] = t
			selected = append(selected, t)
		}
		if !matched && name != "*" {
			return nil, fmt.Errorf("tool pattern %q: mcp server %q has no tool %q", p, server, name)
		}
	}
	return selected, nil
}

// offer is c's tool of that name.
func (r *Registry) offer(c *conn, name string) *tool {
	for _, t := range r.offers[name] {
		if t.conn == c {
			return t
		}
	}
	return nil
}

// Call runs a tool with input, the JSON object the model wrote. name is the
// bare name a model calls it by, or "server.tool" when two servers offer
// that name (see Resolve). Input that is not a JSON object is a tool error,
// for the model to correct. A Go error means an unknown tool or a failure
// to reach the server; the tool may then have run or not. Cancelling ctx
// stops the call, and the server is told to stop the tool.
func (r *Registry) Call(ctx context.Context, name string, input json.RawMessage) (Result, error) {
	t, err := r.lookup(name)
	if err != nil {
		return Result{}, err
	}
	args, ok := arguments(input)
	if !ok {
		return Result{Output: "the tool input must be a JSON object", IsError: true}, nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Result{}, fmt.Errorf("call tool %s: %w", t.qualified(), errClosed)
	}
	r.running.Add(1)
	r.mu.Unlock()
	defer r.running.Done()
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.closing, cancel)()
	res, err := t.conn.call(callCtx, &mcp.CallToolParams{Name: t.spec.Name, Arguments: args})
	if err != nil {
		if ctx.Err() == nil && r.closing.Err() != nil {
			err = errClosed
		}
		return Result{}, fmt.Errorf("call tool %s: %w", t.qualified(), err)
	}
	return result(res), nil
}

// lookup finds the tool a bare or qualified name means.
func (r *Registry) lookup(name string) (*tool, error) {
	if server, bare, ok := strings.Cut(name, "."); ok {
		if c := r.byName[server]; c != nil {
			if t := r.offer(c, bare); t != nil {
				return t, nil
			}
		}
		return nil, fmt.Errorf("unknown tool %q", name)
	}
	switch offers := r.offers[name]; len(offers) {
	case 0:
		return nil, fmt.Errorf("unknown tool %q", name)
	case 1:
		return offers[0], nil
	default:
		return nil, fmt.Errorf("tool %q is offered by both %s and %s: call it by its server.tool name",
			name, offers[0].conn.name, offers[1].conn.name)
	}
}

// arguments is the model's input as the call's arguments: no input, or
// null, stands for no arguments.
func arguments(input json.RawMessage) (any, bool) {
	trimmed := strings.TrimSpace(string(input))
	if trimmed == "" || trimmed == "null" {
		return map[string]any{}, true
	}
	if trimmed[0] != '{' || !json.Valid(input) {
		return nil, false
	}
	return input, true
}

// result is what a model reads of a tool's result.
func result(res *mcp.CallToolResult) Result {
	var texts []string
	var other []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			texts = append(texts, c.Text)
		case *mcp.ImageContent:
			other = append(other, "image "+c.MIMEType)
		case *mcp.AudioContent:
			other = append(other, "audio "+c.MIMEType)
		case *mcp.ResourceLink:
			other = append(other, "resource link "+c.URI)
		case *mcp.EmbeddedResource:
			other = append(other, "resource")
		}
	}
	out := Result{IsError: res.IsError}
	switch {
	case len(texts) > 0:
		out.Output = strings.Join(texts, "\n")
	case res.StructuredContent != nil:
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			out.Output = string(b)
		}
	case len(other) > 0:
		// Say what came, so that a model does not read an empty answer.
		out.Output = "(the tool returned no text: " + strings.Join(other, ", ") + ")"
	}
	return out
}

// Close stops the calls still running (they fail) and ends every session.
// A server still running a cancelled tool may hold Close for the SDK's
// bound on ending a session (5s); the calls themselves return at once.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stopCalls()
	r.running.Wait()
	var errs []error
	for _, c := range r.conns {
		errs = append(errs, c.close())
	}
	r.transport.CloseIdleConnections()
	return errors.Join(errs...)
}
