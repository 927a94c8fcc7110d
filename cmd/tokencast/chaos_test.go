package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tokencast/tokencast/internal/chat"
)

// chaosSwitch turns the chaos suite on; it takes a minute or two, so the
// default go test run leaves it out and .ci/run sets it.
const chaosSwitch = "TOKENCAST_CHAOS"

// TestChaos runs 100 chats against an API process and a worker process while
// it SIGKILLs the worker, restarts the whole API process (crash or SIGTERM)
// on its data dir, and drops client connections at random points. Every
// accepted request must end visibly, and every client must hold exactly the
// stored answer, which is the demo model's text.
func TestChaos(t *testing.T) {
	if os.Getenv(chaosSwitch) != "1" {
		t.Skip("the chaos suite runs with " + chaosSwitch + "=1 (.ci/run sets it)")
	}
	const chats, questions = 100, 2
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	var running atomic.Int32
	results := make([]*chatter, chats)
	for i := range chats {
		ch := &chatter{
			addr: c.apiAddr, session: fmt.Sprintf("chaos-%03d", i), locale: []string{"en", "fr", "de-DE"}[i%3],
			rng:    rand.New(rand.NewPCG(uint64(i), 7)),
			client: &http.Client{Timeout: 10 * time.Second},
		}
		for q := range questions {
			ch.questions = append(ch.questions, fmt.Sprintf("question %d of chat %d", q+1, i))
		}
		results[i] = ch
		running.Add(1)
		wg.Go(func() {
			defer running.Add(-1)
			ch.run(ctx)
		})
	}

	// The chaos: one action at a time, at random intervals, while chats run.
	rng := rand.New(rand.NewPCG(1, 2))
	actions := []func(){c.killWorker, c.crashAPI, c.killWorker, c.stopAPI, c.killWorker, c.crashAPI}
	// Then the faults stop, and every answer must still end.
	const faults = 12
	for i := 0; i < faults && running.Load() > 0 && ctx.Err() == nil; i++ {
		time.Sleep(time.Duration(600+rng.IntN(900)) * time.Millisecond)
		if running.Load() == 0 {
			break
		}
		act := actions[i%len(actions)]
		t.Logf("%s chaos action %d", time.Now().Format("05.000"), i)
		act()
		t.Logf("%s chaos action %d done", time.Now().Format("05.000"), i)
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Errorf("the chats did not finish in time")
	}

	var resumed, restarts, drops, ends, failures int
	for _, ch := range results {
		for _, err := range ch.errs {
			failures++
			if failures <= 20 {
				t.Errorf("%s: %v", ch.session, err)
			}
		}
		if ch.resumes > 0 {
			resumed++
		}
		restarts += ch.restarts
		drops += ch.drops
		ends += ch.ends
	}
	t.Logf("%d chats, %d answers ended (%d END), %d clients resumed, %d connections dropped by clients, %d RESTART events seen; "+
		"%d worker kills, %d API crashes, %d API graceful restarts",
		chats, chats*questions, ends, resumed, drops, restarts, c.workerKills, c.apiCrashes, c.apiStops)
	if c.workerKills == 0 || c.apiCrashes == 0 || c.apiStops == 0 || resumed == 0 || restarts == 0 {
		t.Errorf("the chaos did not happen: every kind of fault must hit the chats at least once")
	}
	if t.Failed() {
		t.Logf("API process:\n%s\nworker process:\n%s", lastLines(c.api.out.String(), 40), lastLines(c.worker.out.String(), 40))
		if dir := os.Getenv("TOKENCAST_CHAOS_LOGS"); dir != "" {
			all := append(c.pastAPI, c.api.out.String())
			_ = os.WriteFile(filepath.Join(dir, "api.log"), []byte(strings.Join(all, "\n--- restarted ---\n")), 0o644)
			_ = os.WriteFile(filepath.Join(dir, "worker.log"), []byte(c.worker.out.String()), 0o644)
		}
	}
}

// cluster is an API process with its embedded NATS open to a worker process.
type cluster struct {
	t                 *testing.T
	dir               string
	apiAddr, natsAddr string
	api, worker       *proc
	workerKills       int
	apiCrashes        int
	apiStops          int
	apiArgs, wrkrArgs []string
	// pastAPI keeps the output of the API processes stopped or killed,
	// for the logs of a failed run.
	pastAPI []string
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), apiAddr: freeAddr(t), natsAddr: freeAddr(t)}
	// A dozen crashes in a few seconds can use up the default --max-deliver
	// on one request, which then ends in ERROR by design (shown in
	// TestRequestThatKeepsFailingEndsInErrorAndADeadLetter); here every
	// answer must survive the chaos, so the budget is out of the way.
	common := []string{"--ack-wait", "1s", "--max-deliver", "100", "--log-level", "info"}
	c.apiArgs = append([]string{"--role", "api", "--data-dir", c.dir, "--nats-listen", c.natsAddr,
		"--ask-rate", "0", "--session-rate", "0", "--max-pending-conns-per-addr", "1000", "--shutdown-timeout", "5s"}, common...)
	// Each answer lasts about 1.5 s: 200 ms to the first token, then about
	// 40 tokens 30 ms apart, each its own DELTA.
	c.wrkrArgs = append([]string{"--role", "worker", "--nats-url", "nats://" + c.natsAddr, "--data-dir", t.TempDir(),
		"--demo-ttft", "200ms", "--demo-token-interval", "30ms", "--coalesce-window", "0", "--workers", "100"}, common...)
	c.api = spawnAt(t, c.apiAddr, c.apiArgs...)
	c.worker = spawn(t, c.wrkrArgs...)
	return c
}

// killWorker SIGKILLs the worker process mid-answer and starts a new one.
func (c *cluster) killWorker() {
	c.worker.kill()
	c.workerKills++
	c.worker = spawn(c.t, c.wrkrArgs...)
}

// crashAPI SIGKILLs the API process (and its embedded NATS) and starts it
// again on the same data dir and addresses; the worker reconnects.
func (c *cluster) crashAPI() {
	c.api.kill()
	c.pastAPI = append(c.pastAPI, c.api.out.String())
	c.apiCrashes++
	c.api = spawnAt(c.t, c.apiAddr, c.apiArgs...)
}

// stopAPI restarts the API process gracefully, as SIGTERM does.
func (c *cluster) stopAPI() {
	_ = c.api.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.api.done:
	case <-time.After(20 * time.Second):
		c.t.Errorf("API process did not stop within 20s of SIGTERM")
		c.api.kill()
	}
	c.apiStops++
	c.pastAPI = append(c.pastAPI, c.api.out.String())
	c.api = spawnAt(c.t, c.apiAddr, c.apiArgs...)
}

// chatter is one chat: a graphql-transport-ws client watching its session
// that asks its questions one after the other, and survives what the chaos
// does to it by resuming from its last cursor.
type chatter struct {
	addr      string
	session   string
	locale    string
	questions []string
	rng       *rand.Rand
	client    *http.Client

	conn   *websocket.Conn
	cursor string // of the last event received

	trace                          []string
	resumes, restarts, drops, ends int
	errs                           []error
}

const chaosSubscription = `subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) { type message requestId index cursor } }`

func (ch *chatter) fail(format string, args ...any) {
	ch.errs = append(ch.errs, fmt.Errorf(format, args...))
}

func (ch *chatter) run(ctx context.Context) {
	defer func() {
		if ch.conn != nil {
			ch.conn.CloseNow()
		}
	}()
	// The first subscription is a plain one, as a new client's is.
	if err := ch.connect(ctx, false); err != nil {
		ch.fail("first subscribe: %v", err)
		return
	}
	for q := range ch.questions {
		request := fmt.Sprintf("%s-q%d", ch.session, q)
		if err := ch.ask(ctx, request, ch.questions[q]); err != nil {
			ch.fail("ask %s: %v", request, err)
			return
		}
		outcome, text, err := ch.follow(ctx, request)
		if err != nil {
			ch.fail("answer %s: %v", request, err)
			return
		}
		ch.check(ctx, request, outcome, text, ch.questions[:q+1])
	}
}

// connect dials, inits and subscribes, retrying while the server is away.
// A resume asks for everything after the last cursor, or after "0" (the whole
// session) when nothing was received yet.
func (ch *chatter) connect(ctx context.Context, resume bool) error {
	if ch.conn != nil {
		ch.conn.CloseNow()
		ch.conn = nil
	}
	vars := map[string]any{"s": ch.session}
	ch.trace = append(ch.trace, fmt.Sprintf("[resume=%v after %q]", resume, ch.cursor))
	if resume {
		ch.resumes++
		vars["a"] = ch.cursor
		if ch.cursor == "" {
			vars["a"] = "0"
		}
	}
	var last error
	for ctx.Err() == nil {
		conn, err := ch.dial(ctx, vars)
		if err == nil {
			ch.conn = conn
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
}

func (ch *chatter) dial(ctx context.Context, vars map[string]any) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+ch.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	write := func(v any) error {
		data, _ := json.Marshal(v)
		return conn.Write(dctx, websocket.MessageText, data)
	}
	if err := write(map[string]any{"type": "connection_init"}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	if _, data, err := conn.Read(dctx); err != nil || !strings.Contains(string(data), "connection_ack") {
		conn.CloseNow()
		return nil, fmt.Errorf("init: %q %v", data, err)
	}
	sub := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": chaosSubscription, "variables": vars}}
	if err := errors.Join(write(sub), write(map[string]any{"type": "ping"})); err != nil {
		conn.CloseNow()
		return nil, err
	}
	return conn, nil
}

// ask sends the question with the client's own request id, again and again
// until the server accepts it: a retry after a lost answer is the same ask.
func (ch *chatter) ask(ctx context.Context, request, question string) error {
	body, _ := json.Marshal(map[string]any{"query": askQuery, "variables": map[string]any{"input": map[string]any{
		"sessionId": ch.session, "message": question, "locale": ch.locale, "requestId": request}}})
	var last error
	for ctx.Err() == nil {
		last = ch.askOnce(ctx, body, request)
		if last == nil {
			return nil
		}
		var permanent *permanentError
		if errors.As(last, &permanent) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
}

type permanentError struct{ error }

func (ch *chatter) askOnce(ctx context.Context, body []byte, request string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ch.addr+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := ch.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out gqlResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		return fmt.Errorf("status %d: %q", resp.StatusCode, raw)
	}
	if len(out.Errors) > 0 {
		if out.Errors[0].Extensions["code"] == chat.CodeUnavailable {
			return fmt.Errorf("unavailable: %s", out.Errors[0].Message)
		}
		return &permanentError{fmt.Errorf("errors %+v", out.Errors)}
	}
	if !strings.Contains(string(out.Data), `"requestId":"`+request+`"`) {
		return &permanentError{fmt.Errorf("accepted as %s", out.Data)}
	}
	return nil
}

// follow reads the answer to request until it ends, resuming after every
// lost connection and dropping its own connection now and then. It returns
// how the answer ended and the text of its DELTAs (of the last attempt).
func (ch *chatter) follow(ctx context.Context, request string) (outcome, answer string, err error) {
	var evs []event
	for {
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("no end after %d events %s: %w; trace %s", len(evs), types(evs), ctx.Err(), strings.Join(ch.trace[max(0, len(ch.trace)-25):], " "))
		}
		if ch.drops < 3 && ch.rng.IntN(60) == 0 {
			ch.drops++
			if err := ch.connect(ctx, true); err != nil {
				return "", "", err
			}
			continue
		}
		m, err := ch.read(ctx)
		if err != nil {
			// The server went away or closed us (1012 on a graceful stop).
			if err := ch.connect(ctx, true); err != nil {
				return "", "", fmt.Errorf("%w; trace %s", err, strings.Join(ch.trace[max(0, len(ch.trace)-25):], " "))
			}
			continue
		}
		switch m.Type {
		case "pong":
			continue
		case "ping":
			data, _ := json.Marshal(map[string]any{"type": "pong"})
			_ = ch.conn.Write(ctx, websocket.MessageText, data)
			continue
		case "next":
		default:
			return "", "", fmt.Errorf("unexpected %s %s", m.Type, m.Payload)
		}
		var p struct {
			Data struct {
				OnSendMessage event `json:"onSendMessage"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return "", "", fmt.Errorf("payload %s: %v", m.Payload, err)
		}
		ev := p.Data.OnSendMessage
		ch.trace = append(ch.trace, fmt.Sprintf("%s/%s/%s@%s(%s)", strings.TrimPrefix(ev.RequestID, ch.session), ev.Type, index(ev), ev.Cursor, time.Now().Format("05.000")))
		if ev.Cursor != "" {
			ch.cursor = ev.Cursor
		}
		switch {
		case ev.Type == "RESYNC":
			return ch.reload(ctx, request)
		case ev.RequestID != request:
			continue // an earlier answer, replayed from the whole session
		case ev.Type == "RESTART":
			ch.restarts++
			evs = nil
			continue
		}
		if ev.Index == nil || *ev.Index != len(evs) {
			return "", "", fmt.Errorf("event %s with index %s after %s: a gap or a duplicate; trace %s", ev.Type, index(ev), types(evs), strings.Join(ch.trace[max(0, len(ch.trace)-25):], " "))
		}
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" || ev.Type == "CANCELLED" {
			ch.ends++
			deltas := evs
			if ev.Type == "ERROR" && len(evs) >= 2 {
				deltas = evs[:len(evs)-2] // without the localized apology
			}
			return ev.Type, text(deltas), nil
		}
	}
}

func (ch *chatter) read(ctx context.Context) (wsMsg, error) {
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, data, err := ch.conn.Read(rctx)
	if err != nil {
		return wsMsg{}, err
	}
	var m wsMsg
	err = json.Unmarshal(data, &m)
	return m, err
}

// reload is what a client does on RESYNC: it reads the conversation until
// the answer has ended there.
func (ch *chatter) reload(ctx context.Context, request string) (string, string, error) {
	for ctx.Err() == nil {
		turns, err := ch.conversation(ctx)
		if err == nil {
			for _, tu := range turns {
				if tu.RequestID == request && tu.Role == "ASSISTANT" && tu.Status != "IN_PROGRESS" {
					ch.ends++
					return map[string]string{"COMPLETE": "END", "CANCELLED": "CANCELLED", "ERROR": "ERROR", "INCOMPLETE": "ERROR"}[tu.Status], tu.Text, nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", "", ctx.Err()
}

func (ch *chatter) conversation(ctx context.Context) ([]turn, error) {
	body, _ := json.Marshal(map[string]any{"query": conversationQuery, "variables": map[string]any{"s": ch.session}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ch.addr+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := ch.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out gqlResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Errors) > 0 {
		return nil, fmt.Errorf("conversation: %d %v %+v", resp.StatusCode, err, out.Errors)
	}
	var data struct {
		Conversation struct {
			Turns []turn `json:"turns"`
		} `json:"conversation"`
	}
	err = json.Unmarshal(out.Data, &data)
	return data.Conversation.Turns, err
}

// check compares what the client holds with the stored answer and with the
// demo model's text for the session's questions.
func (ch *chatter) check(ctx context.Context, request, outcome, got string, questions []string) {
	var stored *turn
	for ctx.Err() == nil && stored == nil {
		turns, err := ch.conversation(ctx)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for i := range turns {
			if turns[i].RequestID == request && turns[i].Role == "ASSISTANT" {
				if stored != nil {
					ch.fail("%s: two assistant turns", request)
				}
				stored = &turns[i]
			}
		}
		if stored == nil {
			ch.fail("%s ended with %s but the conversation has no answer: %+v", request, outcome, turns)
			return
		}
	}
	if stored == nil {
		return
	}
	want := map[string]string{"END": "COMPLETE", "ERROR": "ERROR", "CANCELLED": "CANCELLED"}[outcome]
	if stored.Status != want && !(outcome == "ERROR" && stored.Status == "INCOMPLETE") {
		ch.fail("%s ended with %s but is stored as %s", request, outcome, stored.Status)
	}
	if got != stored.Text {
		ch.fail("%s: the client holds %q, the conversation %q", request, got, stored.Text)
	}
	if outcome != "END" {
		// The demo model never fails and nobody cancels: whatever the
		// chaos did, the answer could and should have been completed.
		ch.fail("%s ended in %s (stored %s %q)", request, outcome, stored.Status, stored.Text)
	}
	if outcome == "END" {
		if want := demoAnswer(ch.locale, questions...); got != want {
			ch.fail("%s: the client holds %q, the demo model said %q", request, got, want)
		}
	}
}

func index(ev event) string {
	if ev.Index == nil {
		return "-"
	}
	return fmt.Sprint(*ev.Index)
}
