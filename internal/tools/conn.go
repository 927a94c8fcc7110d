package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns the registry's connection to one MCP server: how it is
// dialled (in memory for the built-in server, Streamable HTTP for the
// others), the tools listed at start, and the session that tool calls use,
// opened again when the server has dropped it.

const (
	// connectTimeout bounds one attempt to open a session and list tools, so
	// that a server that accepts connections and never answers cannot hold
	// the start, or a call, forever.
	connectTimeout = 30 * time.Second
	// keepAlive is how often a session is pinged: a server that drops idle
	// sessions keeps ours, and one that dropped it anyway is noticed (the
	// session closes) before a call needs it.
	keepAlive = time.Minute
)

var errClosed = errors.New("tool registry closed")

// dialer opens a session to a server; stop, when not nil, releases what the
// session needed beyond itself.
type dialer func(ctx context.Context) (session *mcp.ClientSession, stop func(), err error)

// conn is the registry's connection to one MCP server.
type conn struct {
	name string
	dial dialer
	log  *slog.Logger
	// tools are the server's tools as listed at start; read-only after.
	tools []chat.ToolSpec

	// lock holds one token and guards what follows; it is a channel so that
	// a call waiting for another's reconnect still honours its ctx.
	lock    chan struct{}
	session *mcp.ClientSession
	stop    func()
	closed  bool
}

func newConn(name string, dial dialer, log *slog.Logger) *conn {
	return &conn{name: name, dial: dial, log: log, lock: make(chan struct{}, 1)}
}

// start opens the first session and lists the server's tools.
func (c *conn) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	session, stop, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("mcp server %q: connect: %w", c.name, err)
	}
	tools, err := listTools(ctx, session)
	if err != nil {
		closeSession(session, stop)
		return fmt.Errorf("mcp server %q: %w", c.name, err)
	}
	c.tools = tools
	c.session, c.stop = session, stop
	return nil
}

// listTools reads every page of the server's tool list.
func listTools(ctx context.Context, session *mcp.ClientSession) ([]chat.ToolSpec, error) {
	var specs []chat.ToolSpec
	seen := make(map[string]bool)
	for t, err := range session.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("list tools: %w", err)
		}
		if !validName.MatchString(t.Name) {
			return nil, fmt.Errorf("tool %q: a model accepts only tool names that match %s", t.Name, validName)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tool %q is listed twice", t.Name)
		}
		seen[t.Name] = true
		schema := json.RawMessage(`{"type":"object"}`)
		if t.InputSchema != nil {
			b, err := json.Marshal(t.InputSchema)
			if err != nil {
				return nil, fmt.Errorf("tool %q: input schema: %w", t.Name, err)
			}
			schema = b
		}
		description := t.Description
		if description == "" {
			description = t.Title
		}
		specs = append(specs, chat.ToolSpec{Name: t.Name, Description: description, InputSchema: schema})
	}
	return specs, nil
}

// call runs a tool on the current session. A call that failed because the
// session had already closed was never sent, so it is sent once more on a
// new session; any other failure is returned, since the server may have run
// the tool and running it twice may do harm.
func (c *conn) call(ctx context.Context, params *mcp.CallToolParams) (*mcp.CallToolResult, error) {
	for retried := false; ; retried = true {
		session, err := c.current(ctx)
		if err != nil {
			return nil, err
		}
		res, err := session.CallTool(ctx, params)
		if err == nil || ctx.Err() != nil {
			return res, err
		}
		gone := errors.Is(err, mcp.ErrConnectionClosed)
		if gone || errors.Is(err, mcp.ErrSessionMissing) {
			// The server dropped the session (restart, idle timeout): the
			// next call opens a new one.
			c.drop(ctx, session)
		}
		if !gone || retried {
			return nil, err
		}
	}
}

// current is the open session, opened again if it was dropped.
func (c *conn) current(ctx context.Context) (*mcp.ClientSession, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()
	if c.closed {
		return nil, errClosed
	}
	if c.session != nil {
		return c.session, nil
	}
	dialCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	session, stop, err := c.dial(dialCtx)
	if err != nil {
		return nil, fmt.Errorf("mcp server %q: reconnect: %w", c.name, err)
	}
	c.log.Info("mcp server reconnected", "server", c.name)
	c.session, c.stop = session, stop
	return session, nil
}

// drop forgets session if it is still the current one, and closes it.
func (c *conn) drop(ctx context.Context, session *mcp.ClientSession) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		// The next call that finds the session closed drops it.
		return
	}
	if c.session != session {
		<-c.lock
		return
	}
	stop := c.stop
	c.session, c.stop = nil, nil
	<-c.lock
	c.log.Warn("mcp server dropped the session", "server", c.name)
	closeSession(session, stop)
}

// close ends the session for good.
func (c *conn) close() error {
	c.lock <- struct{}{}
	session, stop := c.session, c.stop
	c.session, c.stop, c.closed = nil, nil, true
	<-c.lock
	if session == nil {
		return nil
	}
	if err := closeSession(session, stop); err != nil && !errors.Is(err, mcp.ErrConnectionClosed) {
		return fmt.Errorf("mcp server %q: close: %w", c.name, err)
	}
	return nil
}

func closeSession(session *mcp.ClientSession, stop func()) error {
	err := session.Close()
	if stop != nil {
		stop()
	}
	return err
}

// remoteDialer opens sessions to s over Streamable HTTP.
func remoteDialer(client *mcp.Client, s Server, base http.RoundTripper) dialer {
	header := make(http.Header, len(s.Headers))
	for k, v := range s.Headers {
		header.Set(k, v)
	}
	transport := &mcp.StreamableClientTransport{
		Endpoint:   s.URL,
		HTTPClient: &http.Client{Transport: headerTransport{base: base, header: header}},
		// The tool list is read at start and we answer no server requests,
		// so the stream for server-initiated messages would hold a
		// connection and a goroutine per server for nothing.
		DisableStandaloneSSE: true,
	}
	return func(ctx context.Context) (*mcp.ClientSession, func(), error) {
		session, err := client.Connect(ctx, transport, nil)
		return session, nil, err
	}
}

// headerTransport adds a server's configured headers to every request, and
// bounds the JSON answers, which the SDK reads whole (its event streams are
// bounded per event by the SDK itself).
type headerTransport struct {
	base   http.RoundTripper
	header http.Header
}

// maxJSONResponse is the most a JSON answer may hold: the SDK's own bound on
// one streamed event.
const maxJSONResponse = mcp.DefaultMaxEventSize

func (t headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request.
	req = req.Clone(req.Context())
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		resp.Body = newLimitedBody(resp.Body, maxJSONResponse)
	}
	return resp, nil
}

// limitedBody fails a body that goes on past its limit.
type limitedBody struct {
	io.ReadCloser
	// left is what may still be read, plus the one byte that shows the
	// body is too large.
	left int64
}

func newLimitedBody(body io.ReadCloser, limit int64) *limitedBody {
	return &limitedBody{ReadCloser: body, left: limit + 1}
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	if b.left -= int64(n); b.left <= 0 {
		return n - 1, errTooLarge
	}
	return n, err
}

var errTooLarge = fmt.Errorf("the mcp server's answer is larger than %d bytes", maxJSONResponse)
