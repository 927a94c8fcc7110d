package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/provider/demo"
)

// asBinary makes the test binary act as tokencast itself, so tests can run
// it as a separate process and kill it.
const asBinary = "TOKENCAST_TEST_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asBinary) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// fast makes the demo model quick but still streaming token by token.
var fast = []string{"--demo-ttft", "20ms", "--demo-token-interval", "2ms"}

// demoAnswer is the demo model's text after the given questions of a session.
func demoAnswer(locale string, questions ...string) string {
	var msgs []chat.Message
	for _, q := range questions {
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Text: q})
	}
	return demo.Answer(chat.Prompt{Locale: locale, Messages: msgs})
}

func checkAnswer(t *testing.T, evs []event, request, want string) {
	t.Helper()
	if len(evs) < 3 || evs[0].Type != "START" || evs[0].Message != chat.MarkerStart || evs[len(evs)-1].Type != "END" || evs[len(evs)-1].Message != chat.MarkerEnd {
		t.Fatalf("event types %s, want START, DELTA..., END with the sample's markers", types(evs))
	}
	for i, ev := range evs {
		if ev.Index == nil || *ev.Index != i {
			t.Fatalf("event %d has index %v, want %d", i, ev.Index, i)
		}
		if ev.RequestID != request {
			t.Fatalf("event %d has requestId %q, want %q", i, ev.RequestID, request)
		}
		if i > 0 && i < len(evs)-1 && ev.Type != "DELTA" {
			t.Fatalf("event %d is %s, want DELTA", i, ev.Type)
		}
		if ev.Cursor == "" || ev.TimeStamp == "" {
			t.Fatalf("event %d lacks cursor or timeStamp: %+v", i, ev)
		}
	}
	if got := text(evs); got != want {
		t.Fatalf("answer text\n got %q\nwant %q", got, want)
	}
	end := evs[len(evs)-1]
	if end.Usage == nil || end.Usage.OutputTokens != len(demo.Tokens(want)) || end.Usage.TotalTokens != end.Usage.InputTokens+end.Usage.OutputTokens {
		t.Fatalf("END usage %+v, want %d output tokens", end.Usage, len(demo.Tokens(want)))
	}
	if end.StopReason == "" || end.Model != "demo:default" {
		t.Fatalf("END stopReason %q model %q", end.StopReason, end.Model)
	}
}

// TestOpenModeSaysSo: with no keys the server runs open, on loopback only,
// and its banner says so.
func TestOpenModeSaysSo(t *testing.T) {
	s := start(t, "", nil, fast...)
	if out := s.stdout.String(); !strings.Contains(out, "open development mode: no TOKENCAST_API_KEYS, loopback only") {
		t.Fatalf("banner %q does not say the server is open", out)
	}
	keyed := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "client-key-0123456789"}, fast...)
	if out := keyed.stdout.String(); strings.Contains(out, "open development mode") {
		t.Fatalf("a server with keys says it is open: %q", out)
	}
}

func TestAskStreamsTheWholeAnswerInOrder(t *testing.T) {
	s := start(t, "", nil, fast...)
	c := subscribed(t, s, "s-1", nil)
	req := s.ask(t, "", "s-1", "What is tokencast?", "en-US")
	checkAnswer(t, c.answer("1", req), req, demoAnswer("en-US", "What is tokencast?"))
}

func TestFirstDeltaIsNotHeldByCoalescing(t *testing.T) {
	// A window far longer than the whole answer: everything after the first
	// delta is held until the end, but the first one must go out at once.
	s := start(t, "", nil, "--demo-ttft", "300ms", "--demo-token-interval", "5ms",
		"--coalesce-window", "1h", "--coalesce-bytes", "0", "--coalesce-chunks", "0")
	c := subscribed(t, s, "s-ttft", nil)
	req := s.ask(t, "", "s-ttft", "hello", "en")
	evs := c.answer("1", req)
	want := demoAnswer("en", "hello")
	tokens := demo.Tokens(want)
	if types(evs) != "[START DELTA DELTA END]" {
		t.Fatalf("events %s, want START, the first token alone, the rest coalesced, END", types(evs))
	}
	if evs[1].Message != tokens[0] {
		t.Fatalf("first DELTA %q, want the first token %q alone", evs[1].Message, tokens[0])
	}
	checkAnswer(t, evs, req, want)
}

func TestCoalescingByChunkCountReproducesTheSample(t *testing.T) {
	s := start(t, "", nil, append(fast, "--coalesce-window", "1h", "--coalesce-bytes", "0", "--coalesce-chunks", "6")...)
	c := subscribed(t, s, "s-six", nil)
	req := s.ask(t, "", "s-six", "count", "en")
	evs := c.answer("1", req)
	want := demoAnswer("en", "count")
	tokens := demo.Tokens(want)
	checkAnswer(t, evs, req, want)
	// First token alone, then groups of six, then the remainder.
	wantDeltas := 1 + (len(tokens)-1+5)/6
	if got := len(evs) - 2; got != wantDeltas {
		t.Fatalf("%d DELTAs for %d tokens, want %d", got, len(tokens), wantDeltas)
	}
	if evs[2].Message != strings.Join(tokens[1:7], "") {
		t.Fatalf("second DELTA %q, want tokens 2 to 7", evs[2].Message)
	}
}

func TestEverySubscriberGetsTheSameEventsAndOtherSessionsNothing(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "20ms", "--coalesce-window", "0")
	a := subscribed(t, s, "s-fan", nil)
	b := subscribed(t, s, "s-fan", nil)
	other := subscribed(t, s, "s-other", nil)
	req := s.ask(t, "", "s-fan", "fan out", "en")
	// c joins mid-answer: it must still get the answer from START.
	first := []event{a.next("1"), a.next("1"), a.next("1")}
	if first[0].Type != "START" || first[2].Type != "DELTA" {
		t.Fatalf("first events %s", types(first))
	}
	c := dialWS(t, s)
	c.init(nil)
	c.subscribe("1", "s-fan")
	evsA := append(first, a.answer("1", req)...)
	evsB := b.answer("1", req)
	evsC := c.answer("1", req)
	checkAnswer(t, evsA, req, demoAnswer("en", "fan out"))
	if !equalEvents(evsA, evsB) {
		t.Fatalf("subscribers differ:\n%v\n%v", evsA, evsB)
	}
	if !equalEvents(evsA, evsC) {
		t.Fatalf("late joiner differs:\n%s\n%s", types(evsA), types(evsC))
	}
	other.send(map[string]any{"type": "ping"})
	if m := other.must(5 * time.Second); m.Type != "pong" {
		t.Fatalf("a subscriber of another session received %s %s", m.Type, m.Payload)
	}
}

func equalEvents(a, b []event) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestSubscriberThatArrivesAfterTheAskGetsTheAnswerFromStart(t *testing.T) {
	// The AWS sample's UI may reach the server with its question before its
	// WebSocket: the answer must not lose its beginning.
	s := start(t, "", nil, "--demo-ttft", "0", "--demo-token-interval", "30ms")
	req := s.ask(t, "", "s-race", "race", "en")
	time.Sleep(100 * time.Millisecond) // the answer is under way
	c := dialWS(t, s)
	c.init(nil)
	c.subscribe("1", "s-race")
	checkAnswer(t, c.answer("1", req), req, demoAnswer("en", "race"))
}

func TestConversationMemoryAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, nil, fast...)
	c := subscribed(t, s, "s-mem", nil)
	r1 := s.ask(t, "", "s-mem", "first question", "en")
	checkAnswer(t, c.answer("1", r1), r1, demoAnswer("en", "first question"))
	r2 := s.ask(t, "", "s-mem", "second question", "en")
	evs := c.answer("1", r2)
	checkAnswer(t, evs, r2, demoAnswer("en", "first question", "second question"))
	if !strings.Contains(text(evs), `Before that you asked: "first question"`) {
		t.Fatalf("second answer does not know the first question: %q", text(evs))
	}
	c.conn.CloseNow()
	s.stop()

	s2 := start(t, dir, nil, fast...)
	// (subscribed keeps aside the second answer, if it is replayed: it may
	// have ended within the late-join window.)
	c2 := subscribed(t, s2, "s-mem", nil)
	r3 := s2.ask(t, "", "s-mem", "third question", "en")
	checkAnswer(t, c2.answer("1", r3), r3, demoAnswer("en", "first question", "second question", "third question"))
}

func TestProviderFailureIsLocalizedAndCoded(t *testing.T) {
	s := start(t, "", nil, fast...)
	c := subscribed(t, s, "s-err", nil)
	req := s.ask(t, "", "s-err", "please fail "+demo.FailTrigger, "fr-FR")
	evs := c.answer("1", req)
	last := evs[len(evs)-1]
	if last.Type != "ERROR" || last.Message != chat.MarkerError || last.Error == nil || last.Error.Code != chat.CodeProvider {
		t.Fatalf("last event %+v, want ERROR %s with code %s", last, chat.MarkerError, chat.CodeProvider)
	}
	apology := evs[len(evs)-2]
	if apology.Type != "DELTA" || apology.Message != chat.ErrorText("fr") || !strings.HasPrefix(apology.Message, "Désolé") {
		t.Fatalf("before the marker: %+v, want the French apology", apology)
	}
	if evs[0].Type != "START" {
		t.Fatalf("events %s", types(evs))
	}
	// The demo fails after some text: as the AWS sample's orchestrator does,
	// the apology opens a message of its own with a second #START_STREAM#,
	// which typed clients see as a MESSAGE that adds no text.
	if opener := evs[len(evs)-3]; opener.Type != "MESSAGE" || opener.Message != chat.MarkerStart || opener.RequestID != req {
		t.Fatalf("before the apology: %+v, want MESSAGE %s of %s (events %s)", opener, chat.MarkerStart, req, types(evs))
	}
	if evs[len(evs)-4].Type != "DELTA" {
		t.Fatalf("no text before the failure: events %s", types(evs))
	}
}

func TestSSEDeliversTheSameAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	ws := subscribed(t, s, "s-sse", nil)
	body, _ := json.Marshal(map[string]any{"query": subscription, "variables": map[string]any{"sessionId": "s-sse"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url(), bytes.NewReader(body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	time.Sleep(100 * time.Millisecond) // let the SSE subscription attach
	req := s.ask(t, "", "s-sse", "over sse", "en")
	viaWS := ws.answer("1", req)

	var viaSSE []event
	sc := bufio.NewScanner(resp.Body)
	name := ""
	for sc.Scan() && (len(viaSSE) == 0 || viaSSE[len(viaSSE)-1].Type != "END") {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && name == "next":
			var p struct {
				Data struct {
					OnSendMessage event `json:"onSendMessage"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &p); err != nil {
				t.Fatal(err)
			}
			viaSSE = append(viaSSE, p.Data.OnSendMessage)
		}
	}
	checkAnswer(t, viaSSE, req, demoAnswer("en", "over sse"))
	if !equalEvents(viaWS, viaSSE) {
		t.Fatalf("SSE and WebSocket differ:\n%s\n%s", types(viaWS), types(viaSSE))
	}
}

func TestBadInputGetsItsCode(t *testing.T) {
	s := start(t, "", nil, append(fast, "--max-message-bytes", "64")...)
	long := strings.Repeat("x", 65)
	cases := []struct {
		name                     string
		session, message, locale string
		code                     string
	}{
		{"empty message", "s-1", "", "en", chat.CodeEmptyMessage},
		{"whitespace message", "s-1", " \n\t ", "en", chat.CodeEmptyMessage},
		{"message over the limit", "s-1", long, "en", chat.CodeMessageTooLarge},
		{"session with a space", "s 1", "hi", "en", chat.CodeBadSessionID},
		{"session with a dot", "a.b", "hi", "en", chat.CodeBadSessionID},
		{"session too long", strings.Repeat("s", 129), "hi", "en", chat.CodeBadSessionID},
		{"empty session", "", "hi", "en", chat.CodeBadSessionID},
		{"malformed locale", "s-1", "hi", "english!!", chat.CodeBadLocale},
		{"empty locale", "s-1", "hi", "", chat.CodeBadLocale},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": tc.session, "message": tc.message, "locale": tc.locale}})
			if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != tc.code {
				t.Fatalf("status %d errors %+v, want one error with code %s", status, resp.Errors, tc.code)
			}
		})
	}
	t.Run("undeclared variables are ignored", func(t *testing.T) {
		status, resp := s.post(t, "", askQuery, map[string]any{
			"input":   map[string]any{"sessionId": "s-1", "message": "hi", "locale": "en"},
			"history": []any{map[string]any{"role": "user", "content": "before"}},
		})
		if status != http.StatusOK || len(resp.Errors) > 0 {
			t.Fatalf("status %d errors %+v", status, resp.Errors)
		}
	})
	t.Run("GET is refused", func(t *testing.T) {
		resp, err := http.Get(s.url() + "?query=%7B__typename%7D")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET answered %d", resp.StatusCode)
		}
	})
	t.Run("form body is refused", func(t *testing.T) {
		resp, err := http.Post(s.url(), "application/x-www-form-urlencoded", strings.NewReader("query=%7B__typename%7D"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("form POST answered %d", resp.StatusCode)
		}
	})
}

func TestProtocolViolationsGetTheirCloseCodes(t *testing.T) {
	const clientKey = "client-key-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "web:" + clientKey}, append(fast, "--init-timeout", "300ms")...)
	good := map[string]any{"x-api-key": clientKey}
	cases := []struct {
		name string
		do   func(c *wsClient)
		code int
	}{
		{"no connection_init in time", func(c *wsClient) {}, 4408},
		{"subscribe before ack", func(c *wsClient) { c.subscribe("1", "s-1") }, 4401},
		{"second connection_init", func(c *wsClient) {
			c.init(good)
			c.send(map[string]any{"type": "connection_init", "payload": good})
		}, 4429},
		{"duplicate subscription id", func(c *wsClient) {
			c.init(good)
			c.subscribe("1", "s-1")
			c.subscribe("1", "s-1")
		}, 4409},
		{"malformed JSON", func(c *wsClient) { c.sendRaw("{not json") }, 4400},
		{"unknown message type", func(c *wsClient) { c.sendRaw(`{"type":"bogus"}`) }, 4400},
		{"subscribe without id", func(c *wsClient) {
			c.init(good)
			c.sendRaw(`{"type":"subscribe","payload":{"query":"subscription{onSendMessage(sessionId:\"a\"){message}}"}}`)
		}, 4400},
		{"wrong API key", func(c *wsClient) {
			c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"x-api-key": "wrong-key-0123456789"}})
		}, 4403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, s)
			tc.do(c)
			if code, reason := c.closeCode(); int(code) != tc.code {
				t.Fatalf("closed with %d %q, want %d", code, reason, tc.code)
			}
		})
	}
	t.Run("ping gets pong", func(t *testing.T) {
		c := dialWS(t, s)
		c.init(good)
		c.send(map[string]any{"type": "ping", "payload": map[string]any{"n": 1}})
		if m := c.must(5 * time.Second); m.Type != "pong" {
			t.Fatalf("got %s", m.Type)
		}
	})
	t.Run("the x-api-key header of the upgrade also authenticates", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{
			Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: http.Header{"X-Api-Key": {clientKey}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c := &wsClient{t: t, conn: conn}
		t.Cleanup(func() { conn.CloseNow() })
		c.send(map[string]any{"type": "connection_init"}) // no key in the payload
		if m := c.must(5 * time.Second); m.Type != "connection_ack" {
			t.Fatalf("init with the key only in the upgrade's header: %s %s", m.Type, m.Payload)
		}
	})
	t.Run("without a key anywhere, an ask is refused", func(t *testing.T) {
		status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": "s-1", "message": "hi", "locale": "en"}})
		if status != http.StatusUnauthorized || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeUnauthenticated {
			t.Fatalf("ask without a key: %d %+v", status, resp.Errors)
		}
	})
}

func TestSendMessageIsForServicesOnly(t *testing.T) {
	const clientKey, serviceKey = "client-key-0123456789", "service-key-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey, "TOKENCAST_SERVICE_KEYS": "orchestrator:" + serviceKey}, fast...)
	c := subscribed(t, s, "s-pub", map[string]any{"x-api-key": clientKey})
	const mutation = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { sessionId message locale timeStamp type } }`
	vars := map[string]any{"input": map[string]any{"sessionId": "s-pub", "message": "from the orchestrator", "locale": "en"}}

	status, resp := s.post(t, clientKey, mutation, vars)
	if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeForbidden {
		t.Fatalf("sendMessage with a client key: %d %+v, want FORBIDDEN", status, resp.Errors)
	}
	status, resp = s.post(t, serviceKey, mutation, vars)
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("sendMessage with a service key: %d %+v", status, resp.Errors)
	}
	ev := c.next("1")
	if ev.Message != "from the orchestrator" || ev.Type != "MESSAGE" || ev.SessionID != "s-pub" {
		t.Fatalf("subscriber got %+v", ev)
	}
	ts, err := time.Parse(time.RFC3339, ev.TimeStamp)
	if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < -time.Minute {
		t.Fatalf("timeStamp %q is not a current ISO-8601 time: %v", ev.TimeStamp, err)
	}
}

func TestOpenModeRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, func(string) string { return "" }, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "TOKENCAST_API_KEYS") {
		t.Fatalf("run on 0.0.0.0 without keys returned %v, want a refusal naming TOKENCAST_API_KEYS", err)
	}
}

func TestHelpDocumentsEveryFlagAndItsEnv(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve", "--help"}, func(string) string { return "" }, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "help") {
		t.Fatalf("--help returned %v", err)
	}
	for _, name := range []string{"addr", "data-dir", "workers", "max-message-bytes", "coalesce-window", "coalesce-bytes", "coalesce-chunks", "demo-ttft", "demo-token-interval", "init-timeout"} {
		if !strings.Contains(out.String(), "--"+name+" (env "+config.EnvName(name)) {
			t.Errorf("--help lacks --%s with its environment variable", name)
		}
	}
	for _, env := range []string{"TOKENCAST_API_KEYS", "TOKENCAST_SERVICE_KEYS"} {
		if !strings.Contains(out.String(), env) {
			t.Errorf("--help lacks %s", env)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, nil, &out, &out); err != nil || !strings.HasPrefix(out.String(), "tokencast ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	cfg, err := config.Parse([]string{"--workers", "3"}, func(k string) string {
		return map[string]string{"TOKENCAST_WORKERS": "5", "TOKENCAST_DEMO_TTFT": "1s"}[k]
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.Count != 3 || cfg.Providers.Demo.TTFT != time.Second {
		t.Fatalf("workers %d demo-ttft %v, want the flag's 3 and the env's 1s", cfg.Worker.Count, cfg.Providers.Demo.TTFT)
	}
	if _, err := config.Parse(nil, func(k string) string {
		return map[string]string{"TOKENCAST_WORKERS": "many"}[k]
	}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "TOKENCAST_WORKERS") {
		t.Fatalf("a bad env value gave %v, want an error naming it", err)
	}
}

func TestReadmeStartsWithTheTwoCommandsAndListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```sh\ngo run ./cmd/tokencast\ngo test -race ./...\n```") {
		t.Fatal("README does not open with the run and test commands")
	}
	var help bytes.Buffer
	_, _ = config.Parse([]string{"--help"}, func(string) string { return "" }, &help)
	for _, line := range strings.Split(help.String(), "\n") {
		name, ok := strings.CutPrefix(line, "  --")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		if !strings.Contains(string(readme), "| `--"+name+"` | `"+config.EnvName(name)+"` |") {
			t.Errorf("README's configuration table lacks --%s", name)
		}
	}
}

// TestDocsNameOnlyRealFlags: every --flag the README and docs/ write in
// code spans is one that serve, chat or bench accepts, so the docs cannot
// keep a flag that was renamed or removed.
func TestDocsNameOnlyRealFlags(t *testing.T) {
	var help syncBuffer
	for _, cmd := range []string{"serve", "chat", "bench", "usage"} {
		_ = run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, strings.NewReader(""), &help, &help)
	}
	known := map[string]bool{"help": true}
	for _, m := range regexp.MustCompile(`(?m)^\s+--?([a-z][a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	if len(known) < 50 {
		t.Fatalf("only %d flags found in the help of serve, chat and bench", len(known))
	}
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../BENCHMARKS.md")
	span := regexp.MustCompile("`[^`]*`")
	flag := regexp.MustCompile(`--([a-z][a-z0-9-]+)`)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range span.FindAllString(string(text), -1) {
			for _, m := range flag.FindAllStringSubmatch(code, -1) {
				if !known[m[1]] {
					t.Errorf("%s names --%s, which no tokencast command accepts", filepath.Base(f), m[1])
				}
			}
		}
	}
}

func TestMetricsCountTheAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	c := subscribed(t, s, "s-metrics", nil)
	req := s.ask(t, "", "s-metrics", "count me", "en")
	evs := c.answer("1", req)
	output := evs[len(evs)-1].Usage.OutputTokens
	want := []string{
		`tokencast_ttft_seconds_count{model="demo:default"} 1`,
		`tokencast_answers_total{code="",model="demo:default",outcome="END"} 1`,
		fmt.Sprintf(`tokencast_tokens_total{direction="output",model="demo:default"} %d`, output),
		`tokencast_asks_total{code="OK"} 1`,
		`tokencast_websocket_connections 1`,
		`tokencast_watched_sessions 1`,
		`tokencast_connections{protocol="graphql-transport-ws"} 1`,
		fmt.Sprintf(`tokencast_inter_token_seconds_count{model="demo:default"} %d`, output-1),
		`tokencast_requests_waiting 0`,
		`tokencast_requests_in_flight 0`,
		`tokencast_redeliveries_total 0`,
	}
	// The worker counts an answer just after publishing its END, and acks
	// it just after that: scrape until both have happened.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + s.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range missing {
		t.Errorf("/metrics lacks %s", w)
	}
}

func TestInternalListenerKeepsMetricsAndProfilesOffThePublicPort(t *testing.T) {
	internal := freeAddr(t)
	s := start(t, "", nil, append(fast, "--internal-addr", internal, "--pprof")...)
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		if code := get("http://" + s.addr + path); code == http.StatusOK {
			t.Errorf("the public port serves %s", path)
		}
		if code := get("http://" + internal + path); code != http.StatusOK {
			t.Errorf("the internal listener answers %s with %d", path, code)
		}
	}
	if err := run(context.Background(), []string{"serve", "--pprof", "--addr", freeAddr(t)}, func(string) string { return "" }, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--internal-addr") {
		t.Fatalf("--pprof without --internal-addr: %v", err)
	}
}

// TestLateJoinerGetsAServicesStreamFromItsStart: an orchestrator written for
// AppSync streams through sendMessage, between the sample's markers; a tab
// that subscribes mid-stream gets it from #START_STREAM#, as it would one
// of tokencast's own answers, then the rest live.
func TestLateJoinerGetsAServicesStreamFromItsStart(t *testing.T) {
	const clientKey, serviceKey = "client-key-0123456789", "service-key-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey, "TOKENCAST_SERVICE_KEYS": "orchestrator:" + serviceKey}, fast...)
	const mutation = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { type } }`
	send := func(message string) {
		t.Helper()
		status, resp := s.post(t, serviceKey, mutation, map[string]any{"input": map[string]any{"sessionId": "s-sample", "message": message, "locale": "en"}})
		if status != http.StatusOK || len(resp.Errors) > 0 {
			t.Fatalf("sendMessage %q: %d %+v", message, status, resp.Errors)
		}
	}
	send("an earlier, finished exchange")
	send(chat.MarkerStart)
	send("Hel")
	send("lo")
	late := dialWS(t, s)
	late.init(map[string]any{"x-api-key": clientKey})
	var got []string
	for _, ev := range late.subscribeReplayed("1", "s-sample") {
		got = append(got, ev.Message)
	}
	send(" world")
	send(chat.MarkerEnd)
	for len(got) < 5 {
		got = append(got, late.next("1").Message)
	}
	if want := []string{chat.MarkerStart, "Hel", "lo", " world", chat.MarkerEnd}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the late subscriber got %q, want %q", got, want)
	}
}

// TestLateJoinerGetsTheAnswerInFlightPastAServicesMessage: a service's
// plain sendMessage lands in a session while one of tokencast's answers is
// streaming there. It becomes the session's newest event, yet a tab that
// joins just then must still be replayed the answer from its START, and the
// conversation must still show the answer's partial text.
func TestLateJoinerGetsTheAnswerInFlightPastAServicesMessage(t *testing.T) {
	const clientKey, serviceKey = "client-key-0123456789", "service-key-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey, "TOKENCAST_SERVICE_KEYS": "orchestrator:" + serviceKey},
		"--demo-ttft", "20ms", "--demo-token-interval", "60ms", "--coalesce-window", "0")
	const session = "s-mixed"
	early := subscribed(t, s, session, map[string]any{"x-api-key": clientKey})
	request := s.ask(t, clientKey, session, "tell me something", "en")
	var seen []event
	for len(seen) < 3 { // START and two DELTAs: the answer is under way
		seen = append(seen, early.next("1"))
	}
	const note = "a note from the service"
	status, resp := s.post(t, serviceKey, `mutation($input: SendMessageInput!) { sendMessage(input: $input) { type } }`,
		map[string]any{"input": map[string]any{"sessionId": session, "message": note, "locale": "en"}})
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("sendMessage: %d %+v", status, resp.Errors)
	}
	turns := s.conversation(t, clientKey, session)
	if len(turns) != 2 || turns[1].Status != "IN_PROGRESS" || turns[1].RequestID != request || turns[1].Text == "" {
		t.Errorf("mid-answer, past the service's message, the conversation shows %+v; want the answer in progress with its text", turns)
	}

	late := dialWS(t, s)
	late.init(map[string]any{"x-api-key": clientKey})
	got := late.subscribeReplayed("1", session)
	if len(got) == 0 || got[0].Type != "START" || got[0].RequestID != request {
		t.Fatalf("the late subscriber was replayed %+v; want the answer from its START", got)
	}
	for got[len(got)-1].Type != "END" {
		got = append(got, late.next("1"))
	}
	for seen[len(seen)-1].Type != "END" {
		seen = append(seen, early.next("1"))
	}
	var answer []event
	notes := 0
	for _, ev := range got {
		if ev.Message == note {
			notes++
			continue
		}
		answer = append(answer, ev)
	}
	if notes != 1 || text(answer) != text(seen) || len(answer) != len(seen)-1 {
		t.Fatalf("the late subscriber got %d notes and %q in %d events; the early one %q in %d (with the note)", notes, text(answer), len(answer), text(seen), len(seen))
	}
}

// subscribeReplayed subscribes and returns the events the subscription was
// replayed before it went live. Messages are handled in order: the pong to a
// ping sent after the subscribe comes once it is attached, after its replay.
func (c *wsClient) subscribeReplayed(id, session string) []event {
	c.t.Helper()
	c.subscribe(id, session)
	return c.replayedUntilPong(id)
}

// replayedUntilPong pings and returns the events of subscription id that
// come before the pong: what it was replayed before it went live.
func (c *wsClient) replayedUntilPong(id string) []event {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	var got []event
	for {
		m := c.must(10 * time.Second)
		if m.Type == "pong" {
			return got
		}
		var p struct {
			Data struct {
				OnSendMessage event `json:"onSendMessage"`
			} `json:"data"`
		}
		if m.Type != "next" || m.ID != id || json.Unmarshal(m.Payload, &p) != nil {
			c.t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		got = append(got, p.Data.OnSendMessage)
	}
}
