package chatcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// Client is one graphql-transport-ws connection watching one session, plus
// the HTTP endpoint used to ask.
type Client struct {
	opts     Options
	endpoint string // http(s)://…/graphql
	http     *http.Client
	conn     *websocket.Conn
	subID    int
	cursor   string // newest event seen, to resume after a dropped connection
	// frames is what the connection's reader read; the reader goes on while
	// an approval prompt waits, so pings are answered and the server never
	// sees a consumer that stopped reading.
	frames      chan received
	stopReading chan struct{}
	readerDone  chan struct{}
	// lines is the stdin approval prompts read their answers from; nil
	// denies every approval.
	lines *lines
}

// received is a frame, or why the connection's reading ended.
type received struct {
	frame frame
	err   error
}

// usage is an answer's token counts.
type usage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
	TotalTokens  int `json:"totalTokens"`
}

// event is onSendMessage as the client selects it.
type event struct {
	Type       string `json:"type"`
	Message    string `json:"message"`
	RequestID  string `json:"requestId"`
	Index      *int   `json:"index"`
	Cursor     string `json:"cursor"`
	StopReason string `json:"stopReason"`
	Model      string `json:"model"`
	Usage      *usage `json:"usage"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	ToolCall *struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Input string `json:"input"`
	} `json:"toolCall"`
	ToolResult *toolResult `json:"toolResult"`
	Step       *struct {
		Number    int    `json:"number"`
		Reason    string `json:"reason"`
		Continues bool   `json:"continues"`
	} `json:"step"`
	Source *struct {
		Title string `json:"title"`
		URL   string `json:"url"`
	} `json:"source"`
	Approval *approval `json:"approval"`
}

// toolResult is what a tool answered in an agent run.
type toolResult struct {
	CallID     string  `json:"callId"`
	Name       string  `json:"name"`
	Output     string  `json:"output"`
	IsError    bool    `json:"isError"`
	Truncated  bool    `json:"truncated"`
	DurationMs float64 `json:"durationMs"`
}

// watchQuery asks for the agent events too: an agent run's text still
// comes as DELTA, and its steps are shown on stderr.
const watchQuery = `subscription Watch($sessionId: String!, $after: String) {
  onSendMessage(sessionId: $sessionId, after: $after, agent: true) {
    type message requestId index cursor stopReason model
    usage { inputTokens outputTokens totalTokens }
    error { code message }
    toolCall { id name input }
    toolResult { callId name output isError truncated durationMs }
    step { number reason continues }
    source { title url }
    approval { callId tool input approved reason expires }
  }
}`

const askQuery = `query Ask($input: GetLlmResponseInput!) { getLlmResponse(input: $input) { requestId } }`

const cancelQuery = `mutation Cancel($sessionId: String!, $requestId: ID!) { cancelResponse(sessionId: $sessionId, requestId: $requestId) { cancelled } }`

// Connect opens the WebSocket, authenticates and subscribes to the session,
// so that no event of a question asked afterwards can be missed.
func Connect(ctx context.Context, o Options) (*Client, error) {
	endpoint, err := graphqlEndpoint(o.URL)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	c := &Client{opts: o, endpoint: endpoint, http: &http.Client{Timeout: 30 * time.Second, Transport: transport}}
	if err := c.watch(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close ends the connection.
func (c *Client) Close() {
	c.closeConn()
	c.http.CloseIdleConnections()
}

// closeConn ends the WebSocket and waits for its reader.
func (c *Client) closeConn() {
	if c.stopReading != nil {
		close(c.stopReading)
	}
	if c.conn != nil {
		_ = c.conn.Close(websocket.StatusNormalClosure, "bye")
	}
	if c.readerDone != nil {
		<-c.readerDone
	}
	c.conn, c.frames, c.stopReading, c.readerDone = nil, nil, nil, nil
}

func graphqlEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", &Error{Code: "BAD_URL", Message: fmt.Sprintf("--url %q must be an http:// or https:// URL", raw)}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/graphql") {
		u.Path += "/graphql"
	}
	return u.String(), nil
}

// watch (re)connects and subscribes to the session after the newest cursor
// seen, then proves the subscription is attached with a ping round trip: the
// server handles a connection's frames in order.
func (c *Client) watch(ctx context.Context) error {
	wsURL := "ws" + strings.TrimPrefix(c.endpoint, "http")
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return &Error{Code: "CONNECTION", Message: fmt.Sprintf("cannot reach %s: %v", wsURL, err)}
	}
	conn.SetReadLimit(4 << 20)
	c.conn = conn
	init := map[string]any{}
	if c.opts.APIKey != "" {
		init["x-api-key"] = c.opts.APIKey
	}
	if err := c.send(dctx, map[string]any{"type": "connection_init", "payload": init}); err != nil {
		return err
	}
	if _, _, err := c.expect(dctx, "connection_ack"); err != nil {
		return err
	}
	c.subID++
	vars := map[string]any{"sessionId": c.opts.Session}
	if c.cursor != "" {
		vars["after"] = c.cursor
	}
	if err := c.send(dctx, map[string]any{"id": c.id(), "type": "subscribe", "payload": map[string]any{"query": watchQuery, "variables": vars}}); err != nil {
		return err
	}
	if err := c.send(dctx, map[string]any{"type": "ping"}); err != nil {
		return err
	}
	_, kept, err := c.expect(dctx, "pong")
	if err != nil {
		return err
	}
	c.startReading(kept)
	return nil
}

// startReading reads the connection's frames in a goroutine, after the
// ones kept from the handshake, until the connection ends or closeConn.
func (c *Client) startReading(kept []frame) {
	frames, stop, done := make(chan received, 64), make(chan struct{}), make(chan struct{})
	conn, id := c.conn, c.id()
	go func() {
		defer close(done)
		deliver := func(r received) bool {
			select {
			case frames <- r:
				return true
			case <-stop:
				return false
			}
		}
		for _, f := range kept {
			if !deliver(received{frame: f}) {
				return
			}
		}
		for {
			f, err := readFrame(conn, id)
			if !deliver(received{frame: f, err: err}) || err != nil {
				return
			}
		}
	}()
	c.frames, c.stopReading, c.readerDone = frames, stop, done
}

func (c *Client) id() string { return fmt.Sprint(c.subID) }

func (c *Client) send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := c.conn.Write(ctx, websocket.MessageText, data); err != nil {
		return connErr(err)
	}
	return nil
}

type frame struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// readFrame returns the connection's next frame, answering pings on the
// way; an error frame of subscription id ends the reading.
func readFrame(conn *websocket.Conn, id string) (frame, error) {
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			return frame{}, connErr(err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			return frame{}, &Error{Code: "PROTOCOL", Message: "the server sent invalid JSON"}
		}
		if f.Type == "ping" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
			cancel()
			if err != nil {
				return frame{}, connErr(err)
			}
			continue
		}
		if f.Type == "error" && f.ID == id {
			return frame{}, subscriptionError(f.Payload)
		}
		return f, nil
	}
}

// expect reads frames up to one of type want, during the handshake; the
// events that arrive meanwhile (a replay after a reconnect) are returned to
// be read first.
func (c *Client) expect(ctx context.Context, want string) (frame, []frame, error) {
	var kept []frame
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			return frame{}, nil, connErr(err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			return frame{}, nil, &Error{Code: "PROTOCOL", Message: "the server sent invalid JSON"}
		}
		switch {
		case f.Type == want:
			return f, kept, nil
		case f.Type == "error" && f.ID == c.id():
			return frame{}, nil, subscriptionError(f.Payload)
		case f.Type == "next":
			kept = append(kept, f)
		}
	}
}

func subscriptionError(payload json.RawMessage) error {
	var errs []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	}
	_ = json.Unmarshal(payload, &errs)
	if len(errs) == 0 {
		return &Error{Code: "INTERNAL", Message: "the subscription failed"}
	}
	code, _ := errs[0].Extensions["code"].(string)
	if code == "" {
		code = "INTERNAL"
	}
	return &Error{Code: code, Message: errs[0].Message}
}

// connErr names why the connection ended.
func connErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch websocket.CloseStatus(err) {
	case 4403:
		return &Error{Code: "UNAUTHENTICATED", Message: "the server refused the API key (set --api-key or TOKENCAST_API_KEY)"}
	case -1:
		return &Error{Code: "CONNECTION", Message: fmt.Sprintf("connection lost: %v", err)}
	default:
		return &Error{Code: "CONNECTION", Message: fmt.Sprintf("the server closed the connection (%d)", websocket.CloseStatus(err))}
	}
}

// post runs a query or mutation over HTTP.
func (c *Client) post(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.opts.APIKey != "" {
		req.Header.Set("X-Api-Key", c.opts.APIKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{Code: "CONNECTION", Message: fmt.Sprintf("cannot reach %s: %v", c.endpoint, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return &Error{Code: "CONNECTION", Message: err.Error()}
	}
	var result struct {
		Data   json.RawMessage `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(raw, &result); err != nil {
		return &Error{Code: "PROTOCOL", Message: fmt.Sprintf("HTTP %d: not a GraphQL answer", resp.StatusCode)}
	}
	if len(result.Errors) > 0 && string(result.Errors) != "null" {
		err := subscriptionError(result.Errors)
		var e *Error
		if errors.As(err, &e) && e.Code == "UNAUTHENTICATED" {
			e.Message = "the server requires a valid API key (set --api-key or TOKENCAST_API_KEY)"
		}
		return err
	}
	return json.Unmarshal(result.Data, out)
}

// Ask asks one question in the session and writes the answer to stdout as it
// streams; an agent run's steps go to stderr under --verbose, and its tool
// calls that wait for approval are asked about on stderr and answered from
// stdin. An answer that fails returns *Error with the server's code.
func (c *Client) Ask(ctx context.Context, question string, stdout, stderr io.Writer) error {
	requestID := uuid.NewString()
	input := map[string]any{"sessionId": c.opts.Session, "message": question, "locale": c.opts.Locale, "requestId": requestID}
	if c.opts.Model != "" {
		input["model"] = c.opts.Model
	}
	st := stats{asked: time.Now()}
	var asked struct{}
	if err := c.post(ctx, askQuery, map[string]any{"input": input}, &asked); err != nil {
		return err
	}
	d := newDisplay(c.opts, stdout, stderr)
	d.hint()
	ap := newApprovals(c, requestID, d)
	defer ap.stop()
	next := 0 // the index expected next; older ones are replays already shown
	for {
		var f frame
		select {
		case <-ctx.Done():
			ap.stop()
			d.clearHint()
			c.cancel(requestID)
			return ctx.Err()
		case res := <-ap.done:
			ap.finished(ctx, res)
			continue
		case r := <-c.frames:
			if r.err != nil {
				if err := c.reconnect(ctx, r.err); err != nil {
					ap.stop()
					d.clearHint()
					return err
				}
				continue // read the replay
			}
			f = r.frame
		}
		if f.Type == "complete" && f.ID == c.id() {
			ap.stop()
			return &Error{Code: "CONNECTION", Message: "the server ended the subscription"}
		}
		if f.Type != "next" || f.ID != c.id() {
			continue
		}
		var p struct {
			Data struct {
				OnSendMessage event `json:"onSendMessage"`
			} `json:"data"`
		}
		if err := json.Unmarshal(f.Payload, &p); err != nil {
			ap.stop()
			return &Error{Code: "PROTOCOL", Message: "the server sent an event that is not onSendMessage"}
		}
		ev := p.Data.OnSendMessage
		if ev.Cursor != "" {
			c.cursor = ev.Cursor
		}
		if ev.RequestID != requestID || ev.Index == nil {
			// Another device's question on the same session, or RESYNC.
			continue
		}
		if ev.Type == "RESTART" {
			// The new attempt counts its events from 0 again.
			next = 0
			d.restart()
			continue
		}
		if *ev.Index < next {
			continue
		}
		next = *ev.Index + 1
		if st.first.IsZero() && (ev.Type == "DELTA" || ev.Type == "REASONING") {
			st.first = time.Now() // the model's first token, reasoning included
		}
		switch ev.Type {
		case "DELTA":
			d.text(ev.Message)
		case "END":
			ap.stop()
			d.end(true)
			st.end, st.usage, st.model, st.stop = time.Now(), ev.Usage, ev.Model, ev.StopReason
			if c.opts.Verbose {
				fmt.Fprintln(stderr, st)
			}
			return nil
		case "ERROR":
			ap.stop()
			d.end(false)
			e := &Error{Code: "INTERNAL", Message: "the answer failed"}
			if ev.Error != nil {
				e = &Error{Code: ev.Error.Code, Message: ev.Error.Message}
			}
			return e
		case "CANCELLED":
			ap.stop()
			d.end(false)
			return &Error{Code: "CANCELLED", Message: "the answer was stopped"}
		case "APPROVAL_REQUESTED":
			if ev.Approval != nil {
				ap.requested(ctx, *ev.Approval)
			}
		case "APPROVAL":
			if ev.Approval != nil {
				ap.settled(ctx, *ev.Approval)
			}
			d.agent(ev)
		default:
			d.agent(ev)
		}
	}
}

// reconnect resumes the subscription after the newest cursor when the
// connection was lost, a few times with a growing pause; it returns the error
// to report when it gives up or the failure was not the connection's.
func (c *Client) reconnect(ctx context.Context, cause error) error {
	var e *Error
	for attempt := 1; attempt <= 5; attempt++ {
		if !errors.As(cause, &e) || e.Code != "CONNECTION" {
			return cause
		}
		c.closeConn()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
		if cause = c.watch(ctx); cause == nil {
			return nil
		}
	}
	return cause
}

// cancel stops the answer on the server after the user interrupted, so the
// provider call ends too.
func (c *Client) cancel(requestID string) {
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	var out struct{}
	_ = c.post(ctx, cancelQuery, map[string]any{"sessionId": c.opts.Session, "requestId": requestID}, &out)
}
