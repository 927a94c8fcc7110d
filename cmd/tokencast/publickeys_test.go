package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tokencast/tokencast/internal/chat"
)

const publicKey = "public-web-key-0123456789"

// from is an HTTP client whose connections leave from a loopback address of
// its own (127.0.0.0/8 is all loopback on Linux), so the server sees
// distinct client addresses.
func from(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// askFrom asks with an x-api-key from client, with extra headers, and returns
// the error code ("" when accepted).
func (s *server) askFrom(t *testing.T, client *http.Client, key, session string, headers map[string]string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": askQuery, "variables": map[string]any{"input": map[string]any{"sessionId": session, "message": "hi", "locale": "en"}}})
	req, _ := http.NewRequest(http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", key)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if len(out.Errors) == 0 {
		return ""
	}
	code, _ := out.Errors[0].Extensions["code"].(string)
	return code
}

// A public key is every visitor's: its ask rate counts per client address,
// read from X-Forwarded-For only when a trusted proxy sent it. A private key's
// rate stays the key's, wherever it asks from.
func TestPublicKeyAskRateCountsPerClientAddress(t *testing.T) {
	s := start(t, "", map[string]string{"TOKENCAST_PUBLIC_KEYS": "web:" + publicKey, "TOKENCAST_API_KEYS": "app:" + keyA},
		append(fast, "--ask-rate", "1", "--ask-burst", "2", "--trusted-proxies", "127.0.0.3/32")...)
	first, second, proxy := from(t, "127.0.0.1"), from(t, "127.0.0.2"), from(t, "127.0.0.3")

	for i := range 2 {
		if code := s.askFrom(t, first, publicKey, fmt.Sprintf("s-pub-%d", i), nil); code != "" {
			t.Fatalf("ask %d from 127.0.0.1: %s", i, code)
		}
	}
	if code := s.askFrom(t, first, publicKey, "s-pub-3", nil); code != chat.CodeRateLimited {
		t.Fatalf("third ask from 127.0.0.1: %q, want %s", code, chat.CodeRateLimited)
	}
	if code := s.askFrom(t, second, publicKey, "s-pub-4", nil); code != "" {
		t.Fatalf("127.0.0.2 with the same public key: %s, want answered at once", code)
	}
	// A header from a peer that is not a trusted proxy changes nothing.
	if code := s.askFrom(t, first, publicKey, "s-pub-5", map[string]string{"X-Forwarded-For": "198.51.100.9", "Forwarded": "for=198.51.100.9"}); code != chat.CodeRateLimited {
		t.Fatalf("127.0.0.1 with a forged X-Forwarded-For: %q, want %s", code, chat.CodeRateLimited)
	}
	// From the trusted proxy, the header names the client.
	if code := s.askFrom(t, proxy, publicKey, "s-pub-6", map[string]string{"X-Forwarded-For": "127.0.0.1"}); code != chat.CodeRateLimited {
		t.Fatalf("the proxy forwarding 127.0.0.1: %q, want %s", code, chat.CodeRateLimited)
	}
	if code := s.askFrom(t, proxy, publicKey, "s-pub-7", map[string]string{"X-Forwarded-For": "198.51.100.9"}); code != "" {
		t.Fatalf("the proxy forwarding a new client: %s, want answered", code)
	}

	// A private key is one principal wherever it asks from.
	for i := range 2 {
		if code := s.askFrom(t, first, keyA, fmt.Sprintf("s-app-%d", i), nil); code != "" {
			t.Fatalf("private ask %d: %s", i, code)
		}
	}
	if code := s.askFrom(t, second, keyA, "s-app-3", nil); code != chat.CodeRateLimited {
		t.Fatalf("a private key from another address: %q, want %s", code, chat.CodeRateLimited)
	}

	// Each refusal source logged once, with the principal, the address and the
	// flags that change it; never the key.
	logs := s.stderr.String()
	for _, want := range []string{`msg="refused a question over the ask rate"`, "principal=key:web", "addr=127.0.0.1", "--ask-rate", "principal=key:app"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, publicKey) || strings.Contains(logs, keyA) {
		t.Errorf("a key reached the log:\n%s", logs)
	}
}

// dialFrom opens a graphql-transport-ws connection from a loopback address.
func dialFrom(t *testing.T, s *server, client *http.Client) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: client})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &wsClient{t: t, conn: conn}
}

// A public key's connection cap counts per client address; one socket holds
// one slot however often it sends connection_init.
func TestPublicKeyConnectionCapCountsPerClientAddress(t *testing.T) {
	s := start(t, "", map[string]string{"TOKENCAST_PUBLIC_KEYS": "web:" + publicKey}, append(fast, "--max-conns-per-principal", "1")...)
	first, second := from(t, "127.0.0.1"), from(t, "127.0.0.2")
	init := map[string]any{"x-api-key": publicKey}

	held := dialFrom(t, s, first)
	held.init(init)
	over := dialFrom(t, s, first)
	over.send(map[string]any{"type": "connection_init", "payload": init})
	if code, _ := over.closeCode(); code != 4429 {
		t.Fatalf("a second connection from 127.0.0.1: closed %d, want 4429", code)
	}
	other := dialFrom(t, s, second)
	other.init(init)
	if logs := s.stderr.String(); !strings.Contains(logs, `msg="refused a connection over its cap"`) || !strings.Contains(logs, "fix=--max-conns-per-principal") {
		t.Errorf("the refused connection was not logged:\n%s", logs)
	}
}

// The AppSync dialect (graphql-ws) answers every connection_init; a hundred of
// them on one socket hold one slot, given back at close.
func TestRepeatedInitHoldsOneSlot(t *testing.T) {
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "app:" + keyA}, append(fast, "--max-conns-per-principal", "1")...)
	c := dialAppSync(t, s, "/graphql", keyA)
	for range 100 {
		c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyA}})
		for {
			if m := c.must(5 * time.Second); m.Type == "connection_ack" {
				break
			} else if m.Type == "connection_error" {
				t.Fatalf("a repeated init was refused: %s", m.Payload)
			}
		}
	}
	c.conn.Close(websocket.StatusNormalClosure, "")
	// The slot is back: a new connection is admitted (retried while the
	// server notices the close).
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := dialWS(t, s)
		d.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyA}})
		m, err := d.read(5 * time.Second)
		if err == nil && m.Type == "connection_ack" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 100 inits and a close, the principal's one slot is still taken: %v %v", m, err)
		}
	}
}

// Refusals are visible: a foreign origin is logged with the flag that allows
// it, and a thousand refused upgrades from one source write a line or two.
func TestRefusedOriginsAreLoggedOncePerSource(t *testing.T) {
	s := start(t, "", nil, fast...)
	// CORS preflight.
	req, _ := http.NewRequest(http.MethodOptions, s.url(), nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("preflight from a foreign origin: %d", resp.StatusCode)
	}
	logs := s.stderr.String()
	if n := strings.Count(logs, `msg="refused a browser origin"`); n != 1 ||
		!strings.Contains(logs, "origin=https://evil.example") || !strings.Contains(logs, "fix=--allowed-origins") || !strings.Contains(logs, `on="CORS preflight"`) {
		t.Fatalf("want one warn line naming the origin and --allowed-origins, got %d:\n%s", n, logs)
	}

	// WebSocket upgrades from another address: one line for all of them.
	client := from(t, "127.0.0.2")
	for range 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{
			Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: client,
			HTTPHeader: http.Header{"Origin": {"https://evil.example"}},
		})
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("upgrade from a foreign origin: %v %v", resp, err)
		}
	}
	upgrades := strings.Count(s.stderr.String(), `on="WebSocket upgrade"`)
	if upgrades < 1 || upgrades > 2 {
		t.Fatalf("1,000 refused upgrades wrote %d lines, want 1 (2 if a minute passed):\n%s", upgrades, s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), "level=WARN") {
		t.Fatalf("not at warn:\n%s", s.stderr.String())
	}
}

// Sockets that never authenticate hold slots of their own budget, per
// address: an attacker without a key who keeps upgrading cannot take the
// connections of a user who has one.
func TestUnauthenticatedSocketsDoNotStarveUsers(t *testing.T) {
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "app:" + keyA},
		append(fast, "--max-conns", "5", "--max-pending-conns-per-addr", "3", "--init-timeout", "1m")...)
	attacker := from(t, "127.0.0.2")
	upgraded := 0
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: attacker})
		cancel()
		if err == nil {
			upgraded++
			t.Cleanup(func() { conn.CloseNow() })
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("an unauthenticated upgrade over the budget: %v %v", resp, err)
		}
	}
	if upgraded != 3 {
		t.Fatalf("%d unauthenticated sockets from one address held, want 3", upgraded)
	}
	// The user fills the node's five slots, unhindered.
	user := from(t, "127.0.0.1")
	for i := range 5 {
		c := dialFrom(t, s, user)
		c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyA}})
		if m, err := c.read(5 * time.Second); err != nil || m.Type != "connection_ack" {
			t.Fatalf("the user's connection %d: %v %v", i+1, m, err)
		}
	}
	if !strings.Contains(s.stderr.String(), "--max-pending-conns-per-addr") {
		t.Errorf("the refused upgrades were not logged:\n%s", s.stderr.String())
	}
}
