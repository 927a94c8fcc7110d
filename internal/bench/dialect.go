package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Event is one onSendMessage event as the bench reads it.
type Event struct {
	Type      string `json:"type"`
	RequestID string `json:"requestId"`
	Index     *int   `json:"index"`
	Message   string `json:"message"`
	// ToolResult is a TOOL_RESULT's, asked for only with --agent-steps.
	ToolResult *ToolResult `json:"toolResult"`
}

// ToolResult is what the bench reads of a TOOL_RESULT event.
type ToolResult struct {
	CallID     string  `json:"callId"`
	IsError    bool    `json:"isError"`
	DurationMs float64 `json:"durationMs"`
}

// Subscriber is one subscription to one session's events.
type Subscriber interface {
	// Next blocks until the next frame and returns the events in it (a
	// frame without one, such as a keep-alive, returns none).
	Next() ([]Event, error)
	// Close ends the subscription and its connection.
	Close() error
}

// Dialect is how a client subscribes to a session: one per wire protocol.
type Dialect interface {
	// Subscribe opens a subscription to session and returns once the server
	// has attached it (as far as the protocol lets a client know).
	Subscribe(ctx context.Context, session string) (Subscriber, error)
}

// Dialect names accepted by --dialect.
const (
	DialectTransportWS = "graphql-transport-ws"
	DialectSSE         = "sse"
	DialectAppSync     = "appsync"
	dialectFloor       = "floor"
)

// dialectNames lists --dialect's values.
var dialectNames = strings.Join([]string{DialectTransportWS, DialectAppSync, DialectSSE, DialectEvents, DialectAISDK, DialectAGUI}, ", ")

// newDialect returns the named dialect for a tokencast at graphqlURL
// (http://host:port/graphql); with agent, its subscribers ask for the
// agent events too.
func newDialect(name, graphqlURL, apiKey, model string, agent bool) (Dialect, error) {
	query := subscription(agent)
	switch name {
	case DialectEvents:
		return newEvents(graphqlURL, apiKey)
	case DialectAISDK, DialectAGUI:
		return newUIDialect(name, graphqlURL, apiKey, model), nil // Parse refuses them --agent-steps
	case DialectTransportWS:
		return &transportWS{url: wsURL(graphqlURL), apiKey: apiKey, query: query}, nil
	case DialectSSE:
		return &sse{url: graphqlURL, apiKey: apiKey, query: query, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}}, nil
	case DialectAppSync:
		return newAppSync(graphqlURL, apiKey, query)
	default:
		return nil, fmt.Errorf("unknown dialect %q: want %s", name, dialectNames)
	}
}

func wsURL(httpURL string) string {
	switch {
	case strings.HasPrefix(httpURL, "https://"):
		return "wss://" + strings.TrimPrefix(httpURL, "https://")
	case strings.HasPrefix(httpURL, "http://"):
		return "ws://" + strings.TrimPrefix(httpURL, "http://")
	}
	return httpURL
}

// subscription is the query every bench subscriber sends: only what it
// checks. With agent it asks for the agent events (REASONING, TOOL_*, STEP,
// …), which share the answer's event index, and of a TOOL_RESULT for the
// tool's own time.
func subscription(agent bool) string {
	if agent {
		return `subscription Bench($sessionId: String!) { onSendMessage(sessionId: $sessionId, agent: true) { type requestId index message toolResult { callId isError durationMs } } }`
	}
	return `subscription Bench($sessionId: String!) { onSendMessage(sessionId: $sessionId) { type requestId index message } }`
}

// smallDialer keeps the client's own cost per connection low, since it may
// share the process with the server it measures.
var smallDialer = &websocket.Dialer{
	HandshakeTimeout: 30 * time.Second,
	ReadBufferSize:   1024,
	WriteBufferSize:  256,
}

// transportWS speaks graphql-transport-ws (enisdenjo/graphql-ws).
type transportWS struct {
	url    string
	apiKey string
	query  string
}

type wsFrame struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (d *transportWS) Subscribe(ctx context.Context, session string) (Subscriber, error) {
	conn, resp, err := smallDialer.DialContext(ctx, d.url, http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", d.url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", d.url, err)
	}
	fail := func(err error) (Subscriber, error) {
		conn.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	init := map[string]any{"type": "connection_init"}
	if d.apiKey != "" {
		init["payload"] = map[string]string{"x-api-key": d.apiKey}
	}
	if err := conn.WriteJSON(init); err != nil {
		return fail(fmt.Errorf("connection_init: %w", err))
	}
	var ack wsFrame
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		return fail(fmt.Errorf("connection_ack: got %q: %v", ack.Type, err))
	}
	sub := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": d.query, "variables": map[string]string{"sessionId": session}}}
	if err := conn.WriteJSON(sub); err != nil {
		return fail(fmt.Errorf("subscribe: %w", err))
	}
	// The server handles a connection's messages in order: a pong means the
	// subscription is attached.
	if err := conn.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		return fail(fmt.Errorf("ping: %w", err))
	}
	for {
		var f wsFrame
		if err := conn.ReadJSON(&f); err != nil {
			return fail(fmt.Errorf("waiting for pong: %w", err))
		}
		if f.Type == "pong" {
			break
		}
		if f.Type == "error" || f.Type == "complete" {
			return fail(fmt.Errorf("subscribe refused: %s %s", f.Type, f.Payload))
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &wsSubscriber{conn: conn, data: "next"}, nil
}

type wsSubscriber struct {
	conn *websocket.Conn
	data string // the type of an event frame: next (graphql-transport-ws) or data (AppSync)
}

func (s *wsSubscriber) Next() ([]Event, error) {
	_, data, err := s.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f struct {
		Type    string `json:"type"`
		Payload struct {
			Data struct {
				OnSendMessage *Event `json:"onSendMessage"`
			} `json:"data"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid frame %q: %w", data, err)
	}
	switch f.Type {
	case s.data:
		if ev := f.Payload.Data.OnSendMessage; ev != nil {
			return []Event{*ev}, nil
		}
		return nil, fmt.Errorf("%s without onSendMessage: %s", f.Type, data)
	case "error", "complete":
		return nil, fmt.Errorf("subscription ended: %s", data)
	}
	return nil, nil
}

func (s *wsSubscriber) Close() error { return s.conn.Close() }

// appSync speaks AppSync real-time (subprotocol graphql-ws): the auth object
// in ?header=, connection_init, then start with the request as a JSON string
// and the authorization again in its extensions.
type appSync struct {
	url   string
	auth  map[string]string
	query string
}

func newAppSync(graphqlURL, apiKey, query string) (*appSync, error) {
	u, err := url.Parse(wsURL(graphqlURL))
	if err != nil {
		return nil, fmt.Errorf("dialect appsync: %w", err)
	}
	auth := map[string]string{"host": u.Host}
	if apiKey != "" {
		auth["x-api-key"] = apiKey
	}
	header, _ := json.Marshal(auth)
	q := u.Query()
	q.Set("header", base64.StdEncoding.EncodeToString(header))
	q.Set("payload", "e30") // {}
	u.RawQuery = q.Encode()
	return &appSync{url: u.String(), auth: auth, query: query}, nil
}

func (d *appSync) Subscribe(ctx context.Context, session string) (Subscriber, error) {
	conn, err := dialAWS(ctx, "appsync", d.url, "graphql-ws")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Subscriber, error) {
		conn.Close()
		return nil, err
	}
	data, _ := json.Marshal(map[string]any{"query": d.query, "variables": map[string]string{"sessionId": session}})
	start := map[string]any{"id": "1", "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": d.auth},
	}}
	if err := conn.WriteJSON(start); err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	// start_ack: the subscription is live.
	if err := expectFrame(conn, "start_ack"); err != nil {
		return fail(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &wsSubscriber{conn: conn, data: "data"}, nil
}

// dialAWS opens an AWS real-time WebSocket (AppSync's GraphQL dialect, or
// AppSync Events) with the subprotocols protocols, reads until ctx's
// deadline, and sends connection_init, waiting for its connection_ack.
func dialAWS(ctx context.Context, name, url, protocols string) (*websocket.Conn, error) {
	conn, resp, err := smallDialer.DialContext(ctx, url, http.Header{"Sec-WebSocket-Protocol": {protocols}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", name, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	if err := conn.WriteJSON(map[string]string{"type": "connection_init"}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connection_init: %w", err)
	}
	if err := expectFrame(conn, "connection_ack"); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// expectFrame reads frames until one of type want, skipping keep-alives.
func expectFrame(conn *websocket.Conn, want string) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", want, err)
		}
		var f wsFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("waiting for %s: invalid frame %q", want, data)
		}
		switch f.Type {
		case want:
			return nil
		case "ka":
		default:
			return fmt.Errorf("waiting for %s: got %s", want, data)
		}
	}
}

// sse speaks GraphQL over SSE in distinct connections mode (enisdenjo/graphql-sse).
type sse struct {
	url    string
	apiKey string
	query  string
	client *http.Client
}

func (d *sse) Subscribe(ctx context.Context, session string) (Subscriber, error) {
	body, _ := json.Marshal(map[string]any{"query": d.query, "variables": map[string]string{"sessionId": session}})
	// The request lives as long as the subscription, not the dial context.
	reqCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if d.apiKey != "" {
		req.Header.Set("X-Api-Key", d.apiKey)
	}
	stop := context.AfterFunc(ctx, cancel) // dial timeout until the headers arrive
	resp, err := d.client.Do(req)
	stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sse subscribe: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("sse subscribe: HTTP %d %s", resp.StatusCode, msg)
	}
	return &sseSubscriber{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 4096), cancel: cancel}, nil
}

type sseSubscriber struct {
	body   io.ReadCloser
	r      *bufio.Reader
	cancel context.CancelFunc
}

// Next reads one SSE event (lines up to a blank line).
func (s *sseSubscriber) Next() ([]Event, error) {
	var event string
	var data []byte
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errors.New("sse line longer than 4 KiB")
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event == "" && data == nil {
				continue
			}
			switch event {
			case "next":
				var r struct {
					Data struct {
						OnSendMessage *Event `json:"onSendMessage"`
					} `json:"data"`
				}
				if err := json.Unmarshal(data, &r); err != nil || r.Data.OnSendMessage == nil {
					return nil, fmt.Errorf("invalid sse event %q: %v", data, err)
				}
				return []Event{*r.Data.OnSendMessage}, nil
			case "complete":
				return nil, io.EOF
			}
			return nil, nil
		case bytes.HasPrefix(line, []byte("event:")):
			event = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

func (s *sseSubscriber) Close() error {
	s.cancel()
	return s.body.Close()
}

// asker starts an answer in a session.
type asker interface {
	ask(ctx context.Context, session, requestID, question string) error
}

// graphqlAsker asks with getLlmResponse over POST /graphql.
type graphqlAsker struct {
	url    string
	apiKey string
	model  string
	client *http.Client
}

const askQuery = `query Ask($input: GetLlmResponseInput!) { getLlmResponse(input: $input) { requestId } }`

func (a *graphqlAsker) ask(ctx context.Context, session, requestID, question string) error {
	input := map[string]any{"sessionId": session, "message": question, "locale": "en", "requestId": requestID}
	if a.model != "" {
		input["model"] = a.model
	}
	body, _ := json.Marshal(map[string]any{"query": askQuery, "variables": map[string]any{"input": input}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.apiKey != "" {
		req.Header.Set("X-Api-Key", a.apiKey)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("ask: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			GetLlmResponse *struct {
				RequestID string `json:"requestId"`
			} `json:"getLlmResponse"`
		} `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("ask: HTTP %d %q", resp.StatusCode, raw)
	}
	if len(out.Errors) > 0 || out.Data.GetLlmResponse == nil {
		return fmt.Errorf("ask: HTTP %d %s", resp.StatusCode, raw)
	}
	if got := out.Data.GetLlmResponse.RequestID; got != requestID {
		return fmt.Errorf("ask: requestId %q, want %q", got, requestID)
	}
	return nil
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--target %q: want http(s)://host:port/graphql", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/graphql"
	}
	return u, nil
}
