package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// server is a tokencast started through run, as a user would start it.
type server struct {
	t       *testing.T
	addr    string
	dataDir string
	cancel  context.CancelFunc
	done    chan error
	stdout  *syncBuffer
	stderr  *syncBuffer
	// scheme is https when the server was started with --tls-cert; client
	// then trusts that certificate.
	scheme string
	client *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address whose port is free.
//
// The port is free when it is picked and taken later by a child process, so
// it is picked below Linux's ephemeral range (32768 and up): a port the
// kernel hands out for listen(":0") or for an outgoing connection, both of
// which parallel test packages make by the thousand, cannot land on it in
// between.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 1000 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

// start runs the server on a free port and a data dir ("" for a new one), with
// env as its only environment, and waits until /readyz says ready.
func start(t *testing.T, dataDir string, env map[string]string, args ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{t: t, addr: freeAddr(t), dataDir: dataDir, done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{},
		scheme: "http", client: http.DefaultClient}
	for i, a := range args {
		if a == "--tls-cert" && i+1 < len(args) {
			s.scheme, s.client = "https", trustingClient(t, args[i+1])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	all := append([]string{"serve", "--addr", s.addr, "--data-dir", dataDir}, args...)
	getenv := func(k string) string { return env[k] }
	go func() { s.done <- run(ctx, all, getenv, nil, s.stdout, s.stderr) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("server exited: %v\n%s", err, s.stderr)
		default:
		}
		resp, err := s.client.Get(s.scheme + "://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v\n%s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down as SIGTERM would and waits for run to return.
func (s *server) stop() {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			s.t.Errorf("server returned %v", err)
		}
	case <-time.After(30 * time.Second):
		s.t.Errorf("server did not stop")
	}
}

func (s *server) url() string { return s.scheme + "://" + s.addr + "/graphql" }

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// post sends a GraphQL request as JSON and decodes the answer.
func (s *server) post(t *testing.T, apiKey, query string, variables map[string]any) (int, gqlResponse) {
	t.Helper()
	return s.postAs(t, "X-Api-Key", apiKey, query, variables)
}

// postBearer is post with a bearer token.
func (s *server) postBearer(t *testing.T, token, query string, variables map[string]any) (int, gqlResponse) {
	t.Helper()
	return s.postAs(t, "Authorization", "Bearer "+token, query, variables)
}

// postAs sends a GraphQL request with one auth header (none when value is
// empty) and decodes the answer.
func (s *server) postAs(t *testing.T, header, value, query string, variables map[string]any) (int, gqlResponse) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": variables})
	req, _ := http.NewRequest(http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if value != "" && value != "Bearer " {
		req.Header.Set(header, value)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out gqlResponse
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return resp.StatusCode, out
}

const askQuery = `query Ask($input: GetLlmResponseInput!) {
  getLlmResponse(input: $input) { sessionId locale requestId messages { content contentType } }
}`

// ask asks a question and returns its request id.
func (s *server) ask(t *testing.T, apiKey, session, message, locale string) string {
	t.Helper()
	status, resp := s.post(t, apiKey, askQuery, map[string]any{"input": map[string]any{"sessionId": session, "message": message, "locale": locale}})
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("ask: status %d, errors %+v", status, resp.Errors)
	}
	var data struct {
		GetLlmResponse struct {
			RequestID string `json:"requestId"`
			Messages  []struct {
				Content     string `json:"content"`
				ContentType string `json:"contentType"`
			} `json:"messages"`
		} `json:"getLlmResponse"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		t.Fatal(err)
	}
	got := data.GetLlmResponse
	if len(got.Messages) != 1 || got.Messages[0].Content != "success" || got.Messages[0].ContentType != "PlainText" || got.RequestID == "" {
		t.Fatalf("ask answered %s, want the sample's success message and a requestId", resp.Data)
	}
	return got.RequestID
}

// event is onSendMessage as the tests select it.
type event struct {
	SessionID  string `json:"sessionId"`
	Message    string `json:"message"`
	Locale     string `json:"locale"`
	TimeStamp  string `json:"timeStamp"`
	Type       string `json:"type"`
	RequestID  string `json:"requestId"`
	Index      *int   `json:"index"`
	Cursor     string `json:"cursor"`
	StopReason string `json:"stopReason"`
	Model      string `json:"model"`
	Usage      *struct {
		InputTokens  int `json:"inputTokens"`
		OutputTokens int `json:"outputTokens"`
		TotalTokens  int `json:"totalTokens"`
	} `json:"usage"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

const subscription = `subscription Watch($sessionId: String!) {
  onSendMessage(sessionId: $sessionId) {
    sessionId message locale timeStamp type requestId index cursor stopReason model
    usage { inputTokens outputTokens totalTokens }
    error { code message }
  }
}`

// wsClient is a graphql-transport-ws client on a real WebSocket.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	// replayed holds the frames a subscription got before subscribed's pong.
	replayed []wsMsg
}

func dialWS(t *testing.T, s *server) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "graphql-transport-ws" {
		t.Fatalf("subprotocol %q", got)
	}
	conn.SetReadLimit(1 << 20)
	c := &wsClient{t: t, conn: conn}
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(data))
}

func (c *wsClient) sendRaw(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

type wsMsg struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// read returns the next message, or the error that ended the connection.
func (c *wsClient) read(timeout time.Duration) (wsMsg, error) {
	var m wsMsg
	return m, readJSON(c.t, c.conn, timeout, &m)
}

// readJSON reads the next message of conn into v, or returns the error
// that ended the connection; a message that is not JSON fails the test.
func readJSON(t *testing.T, conn *websocket.Conn, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, data, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("server sent invalid JSON %q", data)
	}
	return nil
}

func (c *wsClient) must(timeout time.Duration) wsMsg {
	c.t.Helper()
	m, err := c.read(timeout)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *wsClient) init(payload map[string]any) {
	c.t.Helper()
	c.send(map[string]any{"type": "connection_init", "payload": payload})
	if m := c.must(5 * time.Second); m.Type != "connection_ack" {
		c.t.Fatalf("got %s %s, want connection_ack", m.Type, m.Payload)
	}
}

func (c *wsClient) subscribe(id, session string) {
	c.t.Helper()
	c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": subscription, "variables": map[string]any{"sessionId": session}}})
}

// subscribed dials, inits and subscribes, then proves the subscription is
// attached with a ping round trip (the server handles frames in order). What
// the subscription was replayed before the pong (an answer that ended within
// the late-join window) is kept in replayed.
func subscribed(t *testing.T, s *server, session string, initPayload map[string]any) *wsClient {
	t.Helper()
	c := dialWS(t, s)
	c.init(initPayload)
	c.subscribe("1", session)
	c.send(map[string]any{"type": "ping"})
	for {
		m := c.must(5 * time.Second)
		if m.Type == "pong" {
			return c
		}
		if m.Type != "next" || m.ID != "1" {
			t.Fatalf("got %s %s, want pong", m.Type, m.Payload)
		}
		c.replayed = append(c.replayed, m)
	}
}

// next returns the next onSendMessage event of subscription id.
func (c *wsClient) next(id string) event {
	c.t.Helper()
	m := c.must(10 * time.Second)
	if m.Type != "next" || m.ID != id {
		c.t.Fatalf("got %s(%s) %s, want next(%s)", m.Type, m.ID, m.Payload, id)
	}
	return decodeNext(c.t, m)
}

// decodeNext reads the onSendMessage event of a next frame.
func decodeNext(t *testing.T, m wsMsg) event {
	t.Helper()
	var p struct {
		Data struct {
			OnSendMessage event `json:"onSendMessage"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p.Data.OnSendMessage
}

// answer reads events until the answer to request ends.
func (c *wsClient) answer(id, request string) []event {
	c.t.Helper()
	var evs []event
	for {
		ev := c.next(id)
		if ev.RequestID != request {
			c.t.Fatalf("event of request %q while waiting for %q: %+v", ev.RequestID, request, ev)
		}
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" || ev.Type == "CANCELLED" {
			return evs
		}
	}
}

// closeCode waits for the server to close the connection and returns the code.
func (c *wsClient) closeCode() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		_, err := c.read(10 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if ok := asClose(err, &ce); ok {
				return ce.Code, ce.Reason
			}
			c.t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

func asClose(err error, ce *websocket.CloseError) bool {
	code := websocket.CloseStatus(err)
	if code == -1 {
		return false
	}
	*ce = websocket.CloseError{Code: code, Reason: closeReason(err)}
	return true
}

func closeReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "reason = "); i >= 0 {
		return s[i+len("reason = "):]
	}
	return ""
}

// text concatenates the DELTA messages of an answer.
func text(evs []event) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Type == "DELTA" {
			b.WriteString(ev.Message)
		}
	}
	return b.String()
}

func types(evs []event) string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return fmt.Sprint(out)
}
