package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokencast/tokencast/internal/chat"
)

const (
	keyA = "user-a-key-0123456789"
	keyB = "user-b-key-0123456789"
)

func twoUsers(t *testing.T, args ...string) *server {
	return start(t, "", map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA + ",bob:" + keyB}, append(fast, args...)...)
}

func TestAnotherUsersSessionIsRefusedAndLeaksNothing(t *testing.T) {
	s := twoUsers(t, "--demo-token-interval", "80ms")
	alice := subscribed(t, s, "s-alice", map[string]any{"x-api-key": keyA})
	// Everything bob tries happens while alice's answer streams.
	r := s.ask(t, keyA, "s-alice", "mine", "en")

	// Bob over graphql-transport-ws: closed with 4403 before any event.
	bob := dialWS(t, s)
	bob.init(map[string]any{"x-api-key": keyB})
	bob.subscribe("1", "s-alice")
	if code, _ := bob.closeCode(); code != 4403 {
		t.Fatalf("bob's subscription closed with %d, want 4403", code)
	}

	// Bob over SSE: refused with FORBIDDEN, no stream.
	body, _ := json.Marshal(map[string]any{"query": subscription, "variables": map[string]any{"sessionId": "s-alice"}})
	req, _ := http.NewRequest(http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("X-Api-Key", keyB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sse gqlResponse
	_ = json.NewDecoder(resp.Body).Decode(&sse)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || len(sse.Errors) != 1 || sse.Errors[0].Extensions["code"] != chat.CodeForbidden {
		t.Fatalf("bob's SSE subscription: %d %+v, want a FORBIDDEN refusal", resp.StatusCode, sse.Errors)
	}

	// Bob over the AppSync real-time dialect: an Unauthorized error for that
	// subscription, and nothing else.
	app := dialAppSync(t, s, "/graphql/realtime", keyB)
	app.send(map[string]any{"type": "connection_init"})
	if m := app.must(5 * time.Second); m.Type != "connection_ack" {
		t.Fatalf("appsync init: %s %s", m.Type, m.Payload)
	}
	app.send(appSyncStart("steal", "s-alice", keyB))
	for {
		m := app.must(5 * time.Second)
		if m.Type == "ka" {
			continue
		}
		if m.Type != "error" || m.ID != "steal" || !strings.Contains(string(m.Payload), "Unauthorized") {
			t.Fatalf("bob's AppSync subscription got %s %s, want an Unauthorized error", m.Type, m.Payload)
		}
		break
	}
	// Bob over the legacy Apollo dialect (payload.query): the same refusal.
	legacy := dialAppSync(t, s, "/graphql", keyB)
	legacy.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyB}})
	if m := legacy.must(5 * time.Second); m.Type != "connection_ack" {
		t.Fatalf("legacy init: %s %s", m.Type, m.Payload)
	}
	legacy.send(map[string]any{"id": "steal", "type": "start", "payload": map[string]any{"query": subscription, "variables": map[string]any{"sessionId": "s-alice"}}})
	for {
		m := legacy.must(5 * time.Second)
		if m.Type == "ka" {
			continue
		}
		if m.Type != "error" || m.ID != "steal" {
			t.Fatalf("bob's legacy subscription got %s %s, want an error", m.Type, m.Payload)
		}
		break
	}

	if turns := s.conversation(t, keyA, "s-alice"); len(turns) != 2 || turns[1].Status != "IN_PROGRESS" {
		t.Fatalf("alice's answer is no longer streaming (%+v): bob's attempts did not overlap it; slow the demo down", turns)
	}
	// Bob can neither ask in, read nor cancel alice's session.
	for name, q := range map[string]struct {
		query string
		vars  map[string]any
	}{
		"ask":          {askQuery, map[string]any{"input": map[string]any{"sessionId": "s-alice", "message": "hijack", "locale": "en"}}},
		"conversation": {conversationQuery, map[string]any{"s": "s-alice"}},
		"cancel":       {`mutation($s: String!, $r: ID!) { cancelResponse(sessionId: $s, requestId: $r) { cancelled } }`, map[string]any{"s": "s-alice", "r": r}},
	} {
		status, resp := s.post(t, keyB, q.query, q.vars)
		if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeForbidden || strings.Contains(string(resp.Data), "mine") {
			t.Errorf("bob's %s: %d %s %+v, want FORBIDDEN and nothing else", name, status, resp.Data, resp.Errors)
		}
	}
	// Alice gets her whole answer, undisturbed.
	checkAnswer(t, alice.answer("1", r), r, demoAnswer("en", "mine"))
	if turns := s.conversation(t, keyA, "s-alice"); len(turns) != 2 {
		t.Fatalf("alice's conversation has %d turns after bob's attempts, want 2", len(turns))
	}
	// Bob's refused subscriptions received nothing of alice's answer.
	for name, c := range map[string]*wsClient{"appsync": app, "legacy": legacy} {
		for {
			m, err := c.read(300 * time.Millisecond)
			if err != nil {
				break
			}
			if m.Type != "ka" {
				t.Fatalf("bob's %s connection received %s %s", name, m.Type, m.Payload)
			}
		}
	}
}

func TestSecretsAndMessagesStayOutOfTheLogs(t *testing.T) {
	const question = "my-private-question-text"
	s := twoUsers(t, "--log-level", "info")
	c := subscribed(t, s, "s-logs", map[string]any{"x-api-key": keyA})
	req := s.ask(t, keyA, "s-logs", question, "en")
	c.answer("1", req)
	// Wrong keys and tokens, over HTTP and WebSocket.
	s.post(t, "wrong-secret-key-0123456789", askQuery, map[string]any{"input": map[string]any{"sessionId": "s-logs", "message": "x", "locale": "en"}})
	bad := dialWS(t, s)
	bad.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": "wrong-secret-key-0123456789", "Authorization": "Bearer secret.token.value"}})
	bad.closeCode()
	logs := s.stderr.String()
	for _, secret := range []string{keyA, keyB, "wrong-secret-key-0123456789", "secret.token.value", question} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if !strings.Contains(logs, "question accepted") {
		t.Fatalf("the log does not record the ask at all:\n%s", logs)
	}
}

func TestForeignOriginCannotOpenAWebSocket(t *testing.T) {
	s := start(t, "", nil, fast...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		HTTPHeader:   http.Header{"Origin": []string{"https://evil.example"}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a foreign origin: %v %v, want 403", err, resp)
	}
	// The server's own origin is fine.
	c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		HTTPHeader:   http.Header{"Origin": []string{"http://" + s.addr}},
	})
	if err != nil {
		t.Fatalf("same-origin dial: %v", err)
	}
	c.CloseNow()
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

func TestSocketsThatNeverInitAreClosed(t *testing.T) {
	s := start(t, "", nil, append(fast, "--init-timeout", "1s", "--max-pending-conns-per-addr", "1000")...)
	before := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]*websocket.Conn, 0, 1000)
	for range 1000 {
		c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		_, _, err := c.Read(ctx)
		if code := websocket.CloseStatus(err); code != 4408 {
			t.Fatalf("socket %d ended with %v (%d), want 4408", i, err, code)
		}
		c.CloseNow()
	}
	// Both ends of every socket are in this process; all must be gone.
	deadline := time.Now().Add(10 * time.Second)
	for openFDs(t) > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := openFDs(t); after > before+5 {
		t.Fatalf("%d file descriptors open, %d before the sockets", after, before)
	}
}

func TestFrameOverTheReadLimitCloses(t *testing.T) {
	s := start(t, "", nil, append(fast, "--ws-read-limit", "1024")...)
	c := dialWS(t, s)
	c.init(nil)
	ok := `{"type":"ping","payload":{"p":"` + strings.Repeat("x", 1024-len(`{"type":"ping","payload":{"p":""}}`)) + `"}}`
	c.sendRaw(ok)
	if m := c.must(5 * time.Second); m.Type != "pong" {
		t.Fatalf("a frame at the limit got %s", m.Type)
	}
	c.sendRaw(ok[:len(ok)-2] + `x"}}`)
	if code, _ := c.closeCode(); code != websocket.StatusMessageTooBig {
		t.Fatalf("a frame one byte over the limit: close %d, want 1009", code)
	}
}

func TestQueryShapeLimits(t *testing.T) {
	s := start(t, "", nil, fast...)
	deep := "{ models { " + strings.Repeat("... on ModelInfo { ", 5) + "name" + strings.Repeat(" }", 5) + " } }"
	var aliases strings.Builder
	aliases.WriteString("{ ")
	for i := range 1000 {
		fmt.Fprintf(&aliases, "m%d: models { name } ", i)
	}
	aliases.WriteString("}")
	depth50 := "{ " + strings.Repeat("models { ", 50) + "name" + strings.Repeat(" }", 50) + " }"
	for _, tc := range []struct {
		name, query, code string
	}{
		{"depth 50", depth50, "QUERY_TOO_DEEP"},
		{"1000 aliases", aliases.String(), "TOO_MANY_ALIASES"},
		{"fragment bomb", fragmentBomb(8), "TOO_MANY_FIELDS"},
		{"20,000 repeated fields", "{" + strings.Repeat("__typename ", 20000) + "}", "TOO_MANY_FIELDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := s.post(t, "", tc.query, nil)
			if len(resp.Errors) == 0 || resp.Errors[0].Extensions["code"] != tc.code || resp.Data != nil && string(resp.Data) != "null" {
				t.Fatalf("got %s %+v, want %s", resp.Data, resp.Errors, tc.code)
			}
		})
	}
	t.Run("fragments stay within limits", func(t *testing.T) {
		_, resp := s.post(t, "", deep, nil)
		if len(resp.Errors) > 0 {
			t.Fatalf("%+v", resp.Errors)
		}
	})
	t.Run("batched array", func(t *testing.T) {
		resp, err := http.Post(s.url(), "application/json", strings.NewReader(`[{"query":"{ models { name } }"},{"query":"{ models { name } }"}]`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out gqlResponse
		_ = json.Unmarshal(raw, &out)
		if resp.StatusCode == http.StatusOK && len(out.Errors) == 0 {
			t.Fatalf("a batch was executed: %d %s", resp.StatusCode, out.Data)
		}
		// A stable code and a fixed message: the body is not echoed.
		if len(out.Errors) != 1 || out.Errors[0].Extensions["code"] != chat.CodeBadInput || strings.Contains(string(raw), "models") {
			t.Fatalf("a batch was refused with %d %s", resp.StatusCode, raw)
		}
	})
}

// fragmentBomb spreads each fragment ten times in the next: 10^levels fields
// in a document under a kilobyte.
func fragmentBomb(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{...F%d}\nfragment F0 on Query{__typename}\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on Query{%s}\n", i, strings.TrimSpace(strings.Repeat(fmt.Sprintf("...F%d ", i-1), 10)))
	}
	return b.String()
}

func TestIntrospectionOnlyInDevelopmentMode(t *testing.T) {
	const q = `{ __schema { queryType { name } } }`
	dev := start(t, "", nil, fast...)
	if _, resp := dev.post(t, "", q, nil); len(resp.Errors) > 0 {
		t.Fatalf("dev mode refused introspection: %+v", resp.Errors)
	}
	prod := start(t, "", map[string]string{"TOKENCAST_API_KEYS": keyA}, append(fast, "--mode", "prod")...)
	if _, resp := prod.post(t, keyA, q, nil); len(resp.Errors) == 0 {
		t.Fatalf("prod mode answered introspection: %s", resp.Data)
	}
	// A misspelt field: development mode suggests the right one, production
	// names nothing of the schema.
	const typo = `{ modelz { name } }`
	if _, resp := dev.post(t, "", typo, nil); len(resp.Errors) == 0 || !strings.Contains(resp.Errors[0].Message, "Did you mean") {
		t.Fatalf("dev mode: %+v", resp.Errors)
	}
	_, resp := prod.post(t, keyA, typo, nil)
	if len(resp.Errors) == 0 || strings.Contains(resp.Errors[0].Message, "Did you mean") || strings.Contains(resp.Errors[0].Message, `"models"`) || resp.Errors[0].Extensions["code"] == nil {
		t.Fatalf("prod mode: %+v", resp.Errors)
	}
}

func TestProductionModeNeedsAuthentication(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--mode", "prod", "--addr", freeAddr(t), "--data-dir", t.TempDir()}, func(string) string { return "" }, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "without authentication") {
		t.Fatalf("prod without keys: %v", err)
	}
	err = run(context.Background(), []string{"serve", "--mode", "prod", "--allowed-origins", "*", "--addr", freeAddr(t), "--data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"TOKENCAST_API_KEYS": keyA}[k]
	}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "allowed-origins") {
		t.Fatalf("prod with a wildcard origin: %v", err)
	}
}

func TestAskRateLimit(t *testing.T) {
	s := twoUsers(t, "--ask-rate", "1", "--ask-burst", "2")
	for i := range 2 {
		s.ask(t, keyA, "s-rate", fmt.Sprintf("q%d", i), "en")
	}
	_, resp := s.post(t, keyA, askQuery, map[string]any{"input": map[string]any{"sessionId": "s-rate", "message": "one too many", "locale": "en"}})
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeRateLimited || resp.Errors[0].Extensions["retryAfter"] == nil {
		t.Fatalf("third ask: %+v, want RATE_LIMITED with retryAfter", resp.Errors)
	}
	// Another principal has its own budget.
	s.ask(t, keyB, "s-rate-b", "mine", "en")
}

// issuer is a local OpenID provider: discovery document and JWKS.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey // signs as kid k1

	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // published in the JWKS, by kid
}

// rotate publishes a new signing key under kid, and withdraws the others.
func (is *issuer) rotate(t *testing.T, kid string) *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.keys = map[string]*rsa.PrivateKey{kid: key}
	is.mu.Unlock()
	return key
}

// kid is the key id a token signed with key carries: its own when the
// issuer published it, else k1 (a forgery claiming the issuer's key).
func (is *issuer) kid(key *rsa.PrivateKey) string {
	is.mu.Lock()
	defer is.mu.Unlock()
	for kid, k := range is.keys {
		if k == key {
			return kid
		}
	}
	return "k1"
}

func newIssuer(t *testing.T) *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, keys: map[string]*rsa.PrivateKey{"k1": key}}
	mux := http.NewServeMux()
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	return is
}

// token signs claims (jwt.Claims, or a map for custom ones) with key.
func (is *issuer) token(t *testing.T, key *rsa.PrivateKey, claims any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", is.kid(key)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBearerTokens(t *testing.T) {
	is := newIssuer(t)
	s := start(t, "", nil, append(fast, "--mode", "prod", "--oidc-issuer", is.srv.URL, "--oidc-audience", "tokencast", "--oidc-skew", "1s", "--token-grace", "0s")...)
	now := time.Now()
	good := jwt.Claims{Issuer: is.srv.URL, Audience: jwt.Audience{"tokencast"}, Subject: "alice", Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	with := func(f func(c *jwt.Claims)) jwt.Claims { c := good; f(&c); return c }
	// alg: none, hand-made: header {"alg":"none"}.
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(is.token(t, is.key, good), ".")[1] + "."

	postWith := func(tok string) (int, gqlResponse) {
		return s.postBearer(t, tok, askQuery, map[string]any{"input": map[string]any{"sessionId": "s-jwt", "message": "hi", "locale": "en"}})
	}
	for name, tok := range map[string]string{
		"forged":         is.token(t, other, good),
		"expired":        is.token(t, is.key, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"not yet valid":  is.token(t, is.key, with(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) })),
		"wrong audience": is.token(t, is.key, with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"someone-else"} })),
		"wrong issuer":   is.token(t, is.key, with(func(c *jwt.Claims) { c.Issuer = "https://evil.example" })),
		"alg none":       none,
		"garbage":        "not.a.jwt",
	} {
		t.Run(name, func(t *testing.T) {
			status, resp := postWith(tok)
			if status != http.StatusUnauthorized || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeUnauthenticated {
				t.Fatalf("%d %+v, want 401 UNAUTHENTICATED", status, resp.Errors)
			}
			c := dialWS(t, s)
			c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": tok}})
			if code, _ := c.closeCode(); code != 4403 {
				t.Fatalf("WebSocket init with it closed %d, want 4403", code)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		if status, resp := postWith(is.token(t, is.key, good)); status != http.StatusOK || len(resp.Errors) > 0 {
			t.Fatalf("%d %+v", status, resp.Errors)
		}
	})
	t.Run("expires mid-stream over SSE", func(t *testing.T) {
		short := is.token(t, is.key, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(2 * time.Second)) }))
		resp := openSSE(t, s, "Authorization", "Bearer "+short, "s-jwt-3")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		// The stream ends by itself with an UNAUTHENTICATED error.
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("the stream did not end at expiry: %v (%q)", err, body)
		}
		if !strings.Contains(string(body), `"code":"UNAUTHENTICATED"`) || !strings.Contains(string(body), "event: complete") {
			t.Fatalf("stream at expiry: %q", body)
		}
	})
	t.Run("expires mid-stream", func(t *testing.T) {
		short := is.token(t, is.key, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(2 * time.Second)) }))
		c := subscribed(t, s, "s-jwt-2", map[string]any{"Authorization": "Bearer " + short})
		if code, reason := c.closeCode(); code != 4401 {
			t.Fatalf("closed with %d %q when the token expired, want 4401", code, reason)
		}
	})
}

func TestTheServerGeneratesOwnedSessionIDs(t *testing.T) {
	s := twoUsers(t)
	ids := map[string]bool{}
	for range 3 {
		status, resp := s.post(t, keyA, `mutation { createSession }`, nil)
		var data struct {
			CreateSession string `json:"createSession"`
		}
		if err := json.Unmarshal(resp.Data, &data); status != http.StatusOK || err != nil || !chat.ValidSessionID(data.CreateSession) {
			t.Fatalf("createSession: %d %s %+v", status, resp.Data, resp.Errors)
		}
		ids[data.CreateSession] = true
	}
	if len(ids) != 3 {
		t.Fatal("session ids repeat")
	}
	for id := range ids {
		_, resp := s.post(t, keyB, askQuery, map[string]any{"input": map[string]any{"sessionId": id, "message": "mine now?", "locale": "en"}})
		if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeForbidden {
			t.Fatalf("another user asked in a generated session: %+v", resp.Errors)
		}
		s.ask(t, keyA, id, "mine", "en")
	}
}

func TestConnectionAndBodyLimits(t *testing.T) {
	s := twoUsers(t, "--max-conns-per-principal", "2", "--max-body-bytes", "4096", "--max-complexity", "5")
	a1 := dialWS(t, s)
	a1.init(map[string]any{"x-api-key": keyA})
	a2 := dialWS(t, s)
	a2.init(map[string]any{"x-api-key": keyA})
	a3 := dialWS(t, s)
	a3.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyA}})
	if code, _ := a3.closeCode(); code != 4429 {
		t.Fatalf("a third connection of one principal closed with %d, want 4429", code)
	}
	b := dialWS(t, s) // another principal is not affected
	b.init(map[string]any{"x-api-key": keyB})

	big := strings.Repeat("x", 5000)
	status, _ := s.post(t, keyA, askQuery, map[string]any{"input": map[string]any{"sessionId": "s-big", "message": big, "locale": "en"}})
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over --max-body-bytes answered %d", status)
	}
	_, resp := s.post(t, keyA, `{ models { name default } a: models { name } b: models { name } }`, nil)
	if len(resp.Errors) == 0 || resp.Errors[0].Extensions["code"] != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Fatalf("a query over --max-complexity: %s %+v", resp.Data, resp.Errors)
	}
}

func TestKeysFromTheConfigFileAreStoredHashed(t *testing.T) {
	const key = "file-key-0123456789abcdef"
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(t.TempDir(), "tokencast.yaml")
	yaml := "api_keys: [\"web:sha256:" + hex.EncodeToString(sum[:]) + "\"]\nnot_a_key: 1\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "", nil, append(fast, "--config", path)...)
	if !strings.Contains(s.stderr.String(), "config file has keys tokencast does not know") {
		t.Errorf("an unknown key in the config file was not warned about:\n%s", s.stderr)
	}
	if status, _ := s.post(t, "", `{ models { name } }`, nil); status != http.StatusUnauthorized {
		t.Fatalf("without the key: %d, want 401 (the file's key turns authentication on)", status)
	}
	s.ask(t, key, "s-file-key", "hello", "en")
}

// openSSE subscribes to session over GraphQL-over-SSE with the given auth
// header. The stream is cut after 20 s, so a test waiting for the server to
// end it fails instead of hanging.
func openSSE(t *testing.T, s *server, header, value, session string) *http.Response {
	t.Helper()
	return openSSEQuery(t, s, header, value, subscription, map[string]any{"sessionId": session})
}

// openSSEQuery is openSSE with any subscription; an empty value sends no
// auth header.
func openSSEQuery(t *testing.T, s *server, header, value, query string, variables map[string]any) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	body, _ := json.Marshal(map[string]any{"query": query, "variables": variables})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if value != "" {
		req.Header.Set(header, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// refusalCode is the code of a refused SSE subscription (a JSON error body).
func refusalCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var out gqlResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Errors) != 1 {
		t.Fatalf("HTTP %d: want one error, got %+v (%v)", resp.StatusCode, out.Errors, err)
	}
	code, _ := out.Errors[0].Extensions["code"].(string)
	return code
}

// TestConnectionCapsCoverSSE: an SSE subscription is a streaming connection
// like a WebSocket, counted in the same per-principal and per-node caps, so
// neither transport lets one key or one flood past them.
func TestConnectionCapsCoverSSE(t *testing.T) {
	const keyC = "user-c-key-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA + ",bob:" + keyB + ",carol:" + keyC},
		append(fast, "--max-conns-per-principal", "1", "--max-conns", "3")...)
	a := dialWS(t, s)
	a.init(map[string]any{"x-api-key": keyA})
	if resp := openSSE(t, s, "X-Api-Key", keyA, "s-cap-a"); resp.StatusCode != http.StatusTooManyRequests || refusalCode(t, resp) != chat.CodeTooManyConnections {
		t.Fatalf("alice's SSE beside her WebSocket: HTTP %d, want 429 %s", resp.StatusCode, chat.CodeTooManyConnections)
	}
	if resp := openSSE(t, s, "X-Api-Key", keyB, "s-cap-b"); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's first SSE stream: HTTP %d", resp.StatusCode)
	}
	b := dialWS(t, s)
	b.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": keyB}})
	if code, _ := b.closeCode(); code != 4429 {
		t.Fatalf("bob's WebSocket beside his SSE stream closed with %d, want 4429", code)
	}
	// The node: alice's WebSocket, bob's stream and one more connection
	// (a connection takes its node slot when it authenticates; bob's
	// refused WebSocket gave its back).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dial := func() (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	}
	c := dialWS(t, s)
	c.init(map[string]any{"x-api-key": keyC})
	conn, resp, err := dial()
	if err == nil {
		conn.CloseNow()
		t.Fatal("a fourth connection was accepted on a node capped at 3")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a fourth WebSocket: %v, want HTTP 503", err)
	}
	if resp := openSSE(t, s, "X-Api-Key", keyA, "s-cap-a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an SSE stream on a full node: HTTP %d, want 503", resp.StatusCode)
	}
}

// TestBearerTokensAcrossAKeyRotation: when the issuer rotates its signing
// key, tokens signed with the new key are accepted at once (the JWKS is
// fetched again for an unknown key id) and those of the withdrawn key are
// not; sessions belong to the configured user claim.
func TestBearerTokensAcrossAKeyRotation(t *testing.T) {
	is := newIssuer(t)
	s := start(t, "", nil, append(fast, "--mode", "prod", "--oidc-issuer", is.srv.URL, "--oidc-audience", "tokencast", "--oidc-user-claim", "email")...)
	now := time.Now()
	claims := func(sub, email string) map[string]any {
		return map[string]any{"iss": is.srv.URL, "aud": "tokencast", "sub": sub, "email": email,
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	}
	sign := func(key *rsa.PrivateKey, c map[string]any) string { return is.token(t, key, c) }
	ask := func(tok, session string) gqlResponse {
		_, out := s.postBearer(t, tok, askQuery, map[string]any{"input": map[string]any{"sessionId": session, "message": "hi", "locale": "en"}})
		return out
	}
	code := func(r gqlResponse) any {
		if len(r.Errors) == 0 {
			return nil
		}
		return r.Errors[0].Extensions["code"]
	}
	old := is.key
	if r := ask(sign(old, claims("id-1", "alice@example.com")), "s-rot"); code(r) != nil {
		t.Fatalf("before the rotation: %+v", r.Errors)
	}
	fresh := is.rotate(t, "k2")
	// The user is the email claim: another subject with the same email is
	// the same owner, another email is not.
	if r := ask(sign(fresh, claims("id-2", "alice@example.com")), "s-rot"); code(r) != nil {
		t.Fatalf("a token of the new key, same user: %+v", r.Errors)
	}
	if r := ask(sign(fresh, claims("id-1", "bob@example.com")), "s-rot"); code(r) != chat.CodeForbidden {
		t.Fatalf("another user in alice's session: %+v, want FORBIDDEN", r.Errors)
	}
	if r := ask(sign(old, claims("id-1", "alice@example.com")), "s-rot-2"); code(r) != chat.CodeUnauthenticated {
		t.Fatalf("a token of the withdrawn key: %+v, want UNAUTHENTICATED", r.Errors)
	}
	if r := ask(sign(fresh, map[string]any{"iss": is.srv.URL, "aud": "tokencast", "sub": "x", "exp": now.Add(time.Hour).Unix()}), "s-rot-3"); code(r) != chat.CodeUnauthenticated {
		t.Fatalf("a token without the user claim: %+v, want UNAUTHENTICATED", r.Errors)
	}
}

// TestHTTPTimeouts: a client that dribbles its headers is cut off after
// --http-read-header-timeout (slowloris), while an SSE stream longer than
// --http-write-timeout goes on, its deadline moved with every frame.
func TestHTTPTimeouts(t *testing.T) {
	s := start(t, "", nil, "--http-read-header-timeout", "300ms", "--http-write-timeout", "500ms",
		"--demo-ttft", "0", "--demo-token-interval", "60ms", "--coalesce-window", "0")
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// Half the default header timeout: only the flag can end it in time.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	for err == nil {
		// net/http may answer 408 before closing; the connection must end.
		_, err = conn.Read(buf[n:])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a client sending half its headers was still connected after 5 s")
	}

	resp := openSSE(t, s, "X-Api-Key", "", "s-long")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	began := time.Now()
	req := s.ask(t, "", "s-long", "a long enough answer", "en")
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"type":"END"`) && strings.Contains(sc.Text(), req) {
			return
		}
	}
	t.Fatalf("the SSE stream ended after %v without its END: %v", time.Since(began), sc.Err())
}

// DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 is
// same-origin with a development server; its Host header gives it away.
func TestDevelopmentModeAnswersOnlyLoopbackHosts(t *testing.T) {
	s := start(t, "", nil, append(fast, "--allowed-hosts", "dev.test")...)
	_, port, _ := net.SplitHostPort(s.addr)
	post := func(host string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url(), strings.NewReader(`{"query":"{ models { name } }"}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+host)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for host, want := range map[string]int{
		"evil.example:" + port: http.StatusForbidden,
		"localhost:" + port:    http.StatusOK,
		"127.0.0.1:" + port:    http.StatusOK,
		"[::1]:" + port:        http.StatusOK,
		"dev.test:" + port:     http.StatusOK,
	} {
		if got := post(host); got != want {
			t.Errorf("POST with Host %s: %d, want %d", host, got, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		Host:         "evil.example:" + port,
		HTTPHeader:   http.Header{"Origin": {"http://evil.example:" + port}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("WebSocket with a foreign Host: %v %v", resp, err)
	}
	if logs := s.stderr.String(); !strings.Contains(logs, `msg="refused a Host header"`) || !strings.Contains(logs, "fix=--allowed-hosts") {
		t.Errorf("the refused Host was not logged:\n%s", logs)
	}
}

// A query result over --max-result-bytes is refused with a stable code on a
// WebSocket, instead of being queued whole for a client that may not read.
func TestLargeResultIsRefusedOnWebSocket(t *testing.T) {
	s := start(t, "", nil, append(fast, "--max-result-bytes", "300")...)
	c := subscribed(t, s, "s-big", nil)
	r := s.ask(t, "", "s-big", strings.Repeat("a long question ", 20), "en")
	c.answer("1", r)
	c.send(map[string]any{"id": "q", "type": "subscribe", "payload": map[string]any{"query": conversationQuery, "variables": map[string]any{"s": "s-big"}}})
	m := c.must(5 * time.Second)
	if m.Type != "error" || m.ID != "q" || !strings.Contains(string(m.Payload), `"code":"RESULT_TOO_LARGE"`) {
		t.Fatalf("got %s(%s) %s, want error RESULT_TOO_LARGE", m.Type, m.ID, m.Payload)
	}
	// The connection lives on.
	c.send(map[string]any{"type": "ping"})
	if m := c.must(5 * time.Second); m.Type != "pong" {
		t.Fatalf("got %s after the refusal", m.Type)
	}
}

// A flood of new sessions is rate limited per principal; sessions already
// owned stay usable, and another principal is not slowed.
func TestNewSessionsAreRateLimited(t *testing.T) {
	s := twoUsers(t, "--session-rate", "1", "--session-burst", "3")
	const create = `mutation { createSession }`
	for i := range 3 {
		if _, resp := s.post(t, keyA, create, nil); len(resp.Errors) > 0 {
			t.Fatalf("session %d: %+v", i+1, resp.Errors)
		}
	}
	_, resp := s.post(t, keyA, create, nil)
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeRateLimited || resp.Errors[0].Extensions["retryAfter"] == nil {
		t.Fatalf("a fourth new session: %+v, want RATE_LIMITED with retryAfter", resp.Errors)
	}
	// Reading an unknown id would claim it: the same limit.
	if _, resp := s.post(t, keyA, conversationQuery, map[string]any{"s": "s-never-seen"}); len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeRateLimited {
		t.Fatalf("a conversation of a new id: %+v, want RATE_LIMITED", resp.Errors)
	}
	// A subscription to a new id is refused the same way, on a WebSocket.
	c := dialWS(t, s)
	c.init(map[string]any{"x-api-key": keyA})
	c.subscribe("1", "s-never-subscribed")
	if m := c.must(5 * time.Second); m.Type != "error" || !strings.Contains(string(m.Payload), chat.CodeRateLimited) {
		t.Fatalf("a subscription to a new id: %s %s", m.Type, m.Payload)
	}
	s.ask(t, keyB, "s-bob-own", "bob is not slowed", "en")
}

// A session unused for its time to live is gone: its turns expire, then its
// owner, and another principal may take the id and finds it empty, never
// the first owner's conversation.
func TestIdleSessionsExpire(t *testing.T) {
	s := twoUsers(t, "--session-ttl", "2s", "--event-retention", "1s")
	alice := subscribed(t, s, "s-expire", map[string]any{"x-api-key": keyA})
	r := s.ask(t, keyA, "s-expire", "remember me", "en")
	alice.answer("1", r)
	alice.conn.CloseNow()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, resp := s.post(t, keyB, conversationQuery, map[string]any{"s": "s-expire"})
		if len(resp.Errors) == 0 {
			var data struct {
				Conversation *struct {
					Turns []turn `json:"turns"`
				} `json:"conversation"`
			}
			if err := json.Unmarshal(resp.Data, &data); err != nil {
				t.Fatal(err)
			}
			if data.Conversation != nil && len(data.Conversation.Turns) > 0 {
				t.Fatalf("bob took the expired session and read alice's turns: %+v", data.Conversation.Turns)
			}
			return
		}
		if resp.Errors[0].Extensions["code"] != chat.CodeForbidden {
			t.Fatalf("bob before the expiry: %+v, want FORBIDDEN", resp.Errors)
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A lost owner record (the ownership store's file truncated, as a crash
// before a write reached the disk may leave it) is restored from the
// conversation, whose questions record who asked them: the owner gets the
// session back, nobody else gets it, and the log says so. A conversation
// whose questions record no owner (a service asked them) fails closed: it is
// refused to everyone, never handed to the first who asks.
func TestLostOwnerRecordIsRestoredOrFailsClosed(t *testing.T) {
	dir := t.TempDir()
	const serviceKey = "service-key-0123456789"
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA + ",bob:" + keyB, "TOKENCAST_SERVICE_KEYS": "svc:" + serviceKey}
	s := start(t, dir, env, fast...)
	alice := subscribed(t, s, "s-owned", map[string]any{"x-api-key": keyA})
	r := s.ask(t, keyA, "s-owned", "my secret plans", "en")
	alice.answer("1", r)
	alice.conn.CloseNow()
	s.ask(t, serviceKey, "s-service", "the service's secret", "en")
	s.stop()

	blocks, err := filepath.Glob(filepath.Join(dir, "nats", "jetstream", "*", "streams", "KV_TC_SESSIONS", "msgs", "*.blk"))
	if err != nil || len(blocks) == 0 {
		t.Fatalf("no block file of the owner bucket under %s: %v", dir, err)
	}
	for _, b := range blocks {
		if err := os.Truncate(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	s2 := start(t, dir, env, fast...)
	_, resp := s2.post(t, keyB, conversationQuery, map[string]any{"s": "s-owned"})
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeForbidden || strings.Contains(string(resp.Data), "secret") {
		t.Fatalf("bob on alice's session whose owner record is lost: %s %+v, want FORBIDDEN and nothing of it", resp.Data, resp.Errors)
	}
	_, resp = s2.post(t, keyA, conversationQuery, map[string]any{"s": "s-owned"})
	if len(resp.Errors) != 0 || !strings.Contains(string(resp.Data), "my secret plans") {
		t.Fatalf("alice on her own session: %s %+v", resp.Data, resp.Errors)
	}
	if logs := s2.stderr.String(); !strings.Contains(logs, "restored a session's lost owner record") {
		t.Fatalf("the log does not say the owner was restored:\n%s", logs)
	}
	// Nobody may claim the service's session, over a WebSocket either.
	for _, key := range []string{keyA, keyB} {
		c := dialWS(t, s2)
		c.init(map[string]any{"x-api-key": key})
		c.subscribe("1", "s-service")
		if m := c.must(5 * time.Second); m.Type != "error" || !strings.Contains(string(m.Payload), chat.CodeUnavailable) {
			t.Fatalf("a subscription to a session without an owner: %s %s", m.Type, m.Payload)
		}
		c.conn.CloseNow()
	}
	if logs := s2.stderr.String(); !strings.Contains(logs, "refused a session whose owner is missing") {
		t.Fatalf("the log does not say why:\n%s", logs)
	}
	// The embedded NATS's own warnings about the file reach our log.
	if logs := s2.stderr.String(); !strings.Contains(logs, "component=nats") || !strings.Contains(logs, "KV_TC_SESSIONS") {
		t.Fatalf("the embedded NATS said nothing of the damaged file:\n%s", logs)
	}
}

// The embedded NATS has no authentication: production mode opens it to the
// network only when told to, and then says so.
func TestProductionRefusesAnOpenEmbeddedNATS(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"TOKENCAST_API_KEYS": keyA}[k] }
	err := run(context.Background(), []string{"serve", "--mode", "prod", "--addr", freeAddr(t), "--data-dir", t.TempDir(), "--nats-listen", freeAddr(t)}, getenv, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--nats-unauthenticated") {
		t.Fatalf("prod with --nats-listen: %v", err)
	}
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": keyA}, append(fast, "--mode", "prod", "--nats-listen", freeAddr(t), "--nats-unauthenticated")...)
	if logs := s.stderr.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "without authentication") {
		t.Fatalf("no warning at start:\n%s", logs)
	}
}
