package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/coder/websocket"

	"github.com/tokencast/tokencast/internal/chat"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into a temp dir.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokencast test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func trustingClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in " + certFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// dialAppSync opens an AppSync real-time connection the way Amplify v5 does:
// subprotocol graphql-ws, the auth object in ?header=.
func dialAppSync(t *testing.T, s *server, path, apiKey string) *wsClient {
	t.Helper()
	header := base64.StdEncoding.EncodeToString([]byte(`{"host":"` + s.addr + `","x-api-key":"` + apiKey + `"}`))
	scheme := "ws"
	if s.scheme == "https" {
		scheme = "wss"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, scheme+"://"+s.addr+path+"?header="+header+"&payload=e30=",
		&websocket.DialOptions{Subprotocols: []string{"graphql-ws"}, HTTPClient: s.client})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "graphql-ws" {
		t.Fatalf("subprotocol %q", got)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &wsClient{t: t, conn: conn}
}

// appSyncAnswer reads data frames of subscription id until the answer ends;
// ka frames may come between them.
func (c *wsClient) appSyncAnswer(id, request string) []event {
	c.t.Helper()
	var evs []event
	for {
		m := c.must(10 * time.Second)
		if m.Type == "ka" {
			continue
		}
		if m.Type != "data" || m.ID != id {
			c.t.Fatalf("got %s(%s) %s, want data(%s)", m.Type, m.ID, m.Payload, id)
		}
		var p struct {
			Data struct {
				OnSendMessage event `json:"onSendMessage"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			c.t.Fatal(err)
		}
		ev := p.Data.OnSendMessage
		if ev.RequestID != request {
			c.t.Fatalf("event of request %q while waiting for %q", ev.RequestID, request)
		}
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" {
			return evs
		}
	}
}

func appSyncStart(id, session, apiKey string) map[string]any {
	data, _ := json.Marshal(map[string]any{"query": subscription, "variables": map[string]any{"sessionId": session}})
	return map[string]any{"id": id, "type": "start", "payload": map[string]any{
		"data":       string(data),
		"extensions": map[string]any{"authorization": map[string]any{"host": "example.com", "x-api-key": apiKey}},
	}}
}

func TestTLSServesHTTPSAndWSSOnOnePort(t *testing.T) {
	const clientKey = "client-key-0123456789"
	cert, key := selfSigned(t)
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey}, append(fast, "--tls-cert", cert, "--tls-key", key)...)
	if !strings.Contains(s.stdout.String(), "https://") {
		t.Fatalf("banner %q does not say https", s.stdout)
	}
	c := dialAppSync(t, s, "/graphql/realtime", clientKey)
	c.send(map[string]any{"type": "connection_init"})
	if m := c.must(5 * time.Second); m.Type != "connection_ack" || string(m.Payload) != `{"connectionTimeoutMs":300000}` {
		t.Fatalf("got %s %s, want connection_ack with connectionTimeoutMs", m.Type, m.Payload)
	}
	c.send(appSyncStart("sub-1", "s-tls", clientKey))
	for {
		m := c.must(5 * time.Second)
		if m.Type == "start_ack" && m.ID == "sub-1" {
			break
		}
		if m.Type != "ka" {
			t.Fatalf("got %s %s, want start_ack", m.Type, m.Payload)
		}
	}
	req := s.ask(t, clientKey, "s-tls", "over TLS", "en")
	checkAnswer(t, c.appSyncAnswer("sub-1", req), req, demoAnswer("en", "over TLS"))

	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + s.addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}
}

func TestAppSyncKeepAlivesArrivePeriodically(t *testing.T) {
	s := start(t, "", nil, append(fast, "--ws-keepalive", "50ms")...)
	c := dialAppSync(t, s, "/graphql", "")
	c.send(map[string]any{"type": "connection_init"})
	if m := c.must(5 * time.Second); m.Type != "connection_ack" {
		t.Fatalf("got %s", m.Type)
	}
	for i := 0; i < 3; i++ {
		if m := c.must(5 * time.Second); m.Type != "ka" {
			t.Fatalf("got %s %s, want ka", m.Type, m.Payload)
		}
	}
}

func TestCORSPreflightForConfiguredOriginsOnly(t *testing.T) {
	const app = "https://app.example.com"
	s := start(t, "", nil, append(fast, "--allowed-origins", app)...)
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, s.url(), nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-api-key,x-amz-user-agent,authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight(app)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("preflight from %s: %d, allow-origin %q", app, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"content-type", "x-api-key", "x-amz-user-agent", "authorization"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
		}
	}
	if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
		t.Errorf("Access-Control-Allow-Methods %q", m)
	}
	if resp := preflight("https://evil.example.com"); resp.StatusCode == http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	body, _ := json.Marshal(map[string]any{"query": "{ __typename }"})
	for origin, want := range map[string]string{app: app, "https://evil.example.com": ""} {
		req, _ := http.NewRequest(http.MethodPost, s.url(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("POST from %s: allow-origin %q, want %q", origin, got, want)
		}
	}
}

// signedSendMessage builds a sendMessage request signed by the AWS SDK's
// SigV4 signer, as an orchestrator written for AppSync signs it.
func signedSendMessage(t *testing.T, s *server, accessKey, secret, session, message string, at time.Time) *http.Request {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($input: SendMessageInput!) { sendMessage(input: $input) { sessionId message locale timeStamp } }`,
		"variables": map[string]any{"input": map[string]any{"sessionId": session, "message": message, "locale": "en"}},
	})
	req, _ := http.NewRequest(http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	signAppSync(t, req, body, accessKey, secret, at)
	return req
}

// signAppSync signs req, whose body is body, with the AWS SDK's SigV4
// signer for the appsync service.
func signAppSync(t *testing.T, req *http.Request, body []byte, accessKey, secret string, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "appsync", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
}

func TestSendMessageAcceptsSigV4FromConfiguredKeys(t *testing.T) {
	const clientKey, accessKey, secret = "client-key-0123456789", "AKIDTOKENCASTTEST", "secret-0123456789-abcdef"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey, "TOKENCAST_SIGV4_KEYS": accessKey + ":" + secret}, fast...)
	c := subscribed(t, s, "s-sig", map[string]any{"x-api-key": clientKey})
	do := func(req *http.Request) (int, gqlResponse) {
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out gqlResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	status, resp := do(signedSendMessage(t, s, accessKey, secret, "s-sig", "signed with SigV4", time.Now()))
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("signed sendMessage: %d %+v", status, resp.Errors)
	}
	if ev := c.next("1"); ev.Message != "signed with SigV4" || ev.Type != "MESSAGE" {
		t.Fatalf("subscriber got %+v", ev)
	}

	tampered := signedSendMessage(t, s, accessKey, secret, "s-sig", "original", time.Now())
	tamperedBody, _ := json.Marshal(map[string]any{
		"query":     `mutation($input: SendMessageInput!) { sendMessage(input: $input) { sessionId } }`,
		"variables": map[string]any{"input": map[string]any{"sessionId": "s-sig", "message": "forged", "locale": "en"}},
	})
	tampered.Body, tampered.ContentLength = nopCloser{bytes.NewReader(tamperedBody)}, int64(len(tamperedBody))
	refusals := map[string]*http.Request{
		"wrong secret":    signedSendMessage(t, s, accessKey, "not-the-secret-0123456789", "s-sig", "x", time.Now()),
		"unknown key":     signedSendMessage(t, s, "AKIDUNKNOWN", secret, "s-sig", "x", time.Now()),
		"too old":         signedSendMessage(t, s, accessKey, secret, "s-sig", "x", time.Now().Add(-10*time.Minute)),
		"from the future": signedSendMessage(t, s, accessKey, secret, "s-sig", "x", time.Now().Add(10*time.Minute)),
		"tampered body":   tampered,
	}
	for name, req := range refusals {
		t.Run(name, func(t *testing.T) {
			status, resp := do(req)
			if status != http.StatusUnauthorized || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeUnauthenticated {
				t.Fatalf("%d %+v, want 401 UNAUTHENTICATED", status, resp.Errors)
			}
		})
	}
	// Nothing refused reached the subscriber.
	c.send(map[string]any{"type": "ping"})
	if m := c.must(5 * time.Second); m.Type != "pong" {
		t.Fatalf("subscriber got %s %s after refused requests", m.Type, m.Payload)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
