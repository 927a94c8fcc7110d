//go:build cluster

// The multi-process cluster test: upstream nats-server and tokencast built
// from source, a 3-node JetStream cluster, 2 API and 2 worker processes, 200
// concurrent chats, and mid-run one NATS node and one worker SIGKILLed. It
// takes a few minutes, so it runs only with -tags cluster (.ci/run does):
//
//	go test -tags cluster -run TestCluster -count=1 -v ./cmd/tokencast
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	clusterChats     = 200
	clusterQuestions = 5 // asked in turn in each chat
)

// child is a process the cluster test started and may kill.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startChild(t *testing.T, name, bin string, args ...string) *child {
	t.Helper()
	c := &child{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("--- %s (last lines)\n%s", name, lastLines(c.out.String(), 25))
		}
	})
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// waitHTTP polls url until it answers 200.
func (c *child) waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-c.done:
			t.Fatalf("%s exited: %s", c.name, c.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s: %s", c.name, url, lastLines(c.out.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goBuild builds a main package into dir and returns the binary's path.
func goBuild(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

func TestClusterSurvivesLosingANATSNodeAndAWorker(t *testing.T) {
	began := time.Now()
	bin := t.TempDir()
	// nats-server at the version go.mod pins, from its own module.
	natsBin := goBuild(t, bin, "nats-server", "github.com/nats-io/nats-server/v2")
	tcBin := goBuild(t, bin, "tokencast", ".")
	t.Logf("built nats-server and tokencast in %s", time.Since(began).Round(time.Millisecond))

	// Three NATS nodes routed to each other.
	type natsNode struct {
		client, route, monitor string
		proc                   *child
	}
	nodes := make([]*natsNode, 3)
	var routes, urls []string
	for i := range nodes {
		nodes[i] = &natsNode{client: freeAddr(t), route: freeAddr(t), monitor: freeAddr(t)}
		routes = append(routes, "nats://"+nodes[i].route)
		urls = append(urls, "nats://"+nodes[i].client)
	}
	for i, n := range nodes {
		host, port := splitAddr(t, n.client)
		_, mport := splitAddr(t, n.monitor)
		n.proc = startChild(t, fmt.Sprintf("nats-%d", i), natsBin,
			"--addr", host, "--port", port, "--http_port", mport,
			"--jetstream", "--store_dir", t.TempDir(), "--server_name", fmt.Sprintf("nats-%d", i),
			"--cluster_name", "tc-ci", "--cluster", "nats://"+n.route, "--routes", strings.Join(routes, ","))
	}
	for _, n := range nodes {
		n.proc.waitHTTP(t, "http://"+n.monitor+"/healthz")
	}
	t.Logf("NATS cluster up after %s", time.Since(began).Round(time.Millisecond))

	// Every tokencast shares the consumer settings, so none rewrites another's.
	common := []string{"--nats-url", strings.Join(urls, ","), "--replicas", "3", "--ack-wait", "2s", "--log-level", "warn"}
	var apis, workers []*child
	var apiAddrs []string
	for i := range 2 {
		addr := freeAddr(t)
		apiAddrs = append(apiAddrs, addr)
		apis = append(apis, startChild(t, fmt.Sprintf("api-%d", i), tcBin, append([]string{"serve", "--role", "api",
			"--addr", addr, "--data-dir", t.TempDir(), "--ask-rate", "0", "--session-rate", "0", "--max-pending-conns-per-addr", "1000"}, common...)...))
	}
	for i := range 2 {
		workers = append(workers, startChild(t, fmt.Sprintf("worker-%d", i), tcBin, append([]string{"serve", "--role", "worker",
			"--addr", freeAddr(t), "--data-dir", t.TempDir(), "--workers", "128",
			"--demo-ttft", "100ms", "--demo-token-interval", "20ms"}, common...)...))
	}
	for i, p := range apis {
		p.waitHTTP(t, "http://"+apiAddrs[i]+"/readyz")
	}
	for _, w := range workers {
		addr := w.cmd.Args[slicesIndex(w.cmd.Args, "--addr")+1]
		w.waitHTTP(t, "http://"+addr+"/readyz")
	}
	t.Logf("2 API and 2 worker processes ready after %s", time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var st clusterStats
	// Mid-run, once a third of the answers have ended, one NATS node and one
	// worker die without a word.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for st.answered.Load() < clusterChats*clusterQuestions/3 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		// The NATS node an API process is connected to, so that API node
		// must reconnect and catch up with what it missed meanwhile.
		victim := 0
		for i, n := range nodes {
			if holdsLiveInterest(n.monitor) {
				victim = i
				break
			}
		}
		nodes[victim].proc.kill()
		workers[0].kill()
		t.Logf("killed nats-%d (an API node's) and worker-0 after %d answers, %s into the run", victim, st.answered.Load(), time.Since(began).Round(time.Millisecond))
	}()

	runStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clusterChats)
	for i := range clusterChats {
		wg.Go(func() {
			c := &clusterClient{apis: apiAddrs, node: i % 2, askNode: (i / 2) % 2, session: fmt.Sprintf("chat-%d", i), stats: &st}
			defer c.close()
			if err := c.run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", c.session, err)
			}
		})
	}
	wg.Wait()
	cancel()
	<-killed
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		if failed <= 10 {
			t.Error(err)
		}
	}
	t.Logf("%d chats, %d answers exact in %s (whole test %s): %d restarts seen, %d resumes, %d asks retried",
		clusterChats, st.answered.Load(), time.Since(runStart).Round(time.Millisecond), time.Since(began).Round(time.Millisecond),
		st.restarts.Load(), st.resumes.Load(), st.askRetries.Load())
	if failed > 0 {
		t.Fatalf("%d of %d chats failed", failed, clusterChats)
	}
	if got := st.answered.Load(); got != clusterChats*clusterQuestions {
		t.Fatalf("%d answers, want %d", got, clusterChats*clusterQuestions)
	}
}

// holdsLiveInterest reports whether a NATS node has a client subscribed to
// live session events: an API process.
func holdsLiveInterest(monitor string) bool {
	resp, err := http.Get("http://" + monitor + "/connz?subs=1&limit=1000")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			Subs []string `json:"subscriptions_list"`
		} `json:"connections"`
	}
	if json.NewDecoder(resp.Body).Decode(&connz) != nil {
		return false
	}
	for _, c := range connz.Connections {
		for _, s := range c.Subs {
			if strings.HasPrefix(s, "tc.live.") {
				return true
			}
		}
	}
	return false
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

type clusterStats struct {
	answered, restarts, resumes, askRetries atomic.Int64
}

// clusterClient is one chat as a careful client runs it: subscribe, then
// ask with its own requestId (so an ask retried after an error is the same
// ask), read the answer; when its WebSocket drops, reconnect to either API
// node and resume after the last cursor; on RESTART, drop what it had.
type clusterClient struct {
	apis          []string
	node, askNode int
	session       string
	stats         *clusterStats

	conn   *websocket.Conn
	cursor string // of the last event received; "0" before any
}

func (c *clusterClient) close() {
	if c.conn != nil {
		c.conn.CloseNow()
	}
}

func (c *clusterClient) run(ctx context.Context) error {
	c.cursor = "0"
	if err := c.connect(ctx, false); err != nil {
		return err
	}
	var questions []string
	for k := range clusterQuestions {
		q := fmt.Sprintf("question %d of %s", k+1, c.session)
		questions = append(questions, q)
		request := fmt.Sprintf("%s-q%d", c.session, k+1)
		if err := c.ask(ctx, request, q); err != nil {
			return err
		}
		if err := c.readAnswer(ctx, request, demoAnswer("en", questions...)); err != nil {
			return fmt.Errorf("answer %d (%s): %w", k+1, request, err)
		}
		c.stats.answered.Add(1)
	}
	return nil
}

// connect opens a WebSocket to the current node and subscribes; resuming, it
// asks for everything after the cursor. A first subscription waits for a
// ping round trip, so it is attached before the first ask.
func (c *clusterClient) connect(ctx context.Context, resume bool) error {
	for attempt := 0; ; attempt++ {
		err := c.dial(ctx, resume)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("connect: %w (last: %v)", ctx.Err(), err)
		}
		c.node ^= 1
		time.Sleep(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond)
	}
}

func (c *clusterClient) dial(ctx context.Context, resume bool) error {
	c.close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+c.apis[c.node]+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return err
	}
	conn.SetReadLimit(1 << 20)
	c.conn = conn
	if err := c.write(dctx, map[string]any{"type": "connection_init"}); err != nil {
		return err
	}
	if m, err := c.read(dctx); err != nil || m.Type != "connection_ack" {
		return fmt.Errorf("init: %s %v", m.Type, err)
	}
	vars := map[string]any{"sessionId": c.session}
	if resume {
		vars["after"] = c.cursor
	}
	if err := c.write(dctx, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($sessionId: String!, $after: String) { onSendMessage(sessionId: $sessionId, after: $after) { type message requestId index cursor } }`,
		"variables": vars,
	}}); err != nil {
		return err
	}
	if resume {
		return nil
	}
	if err := c.write(dctx, map[string]any{"type": "ping"}); err != nil {
		return err
	}
	m, err := c.read(dctx)
	if err != nil {
		return err
	}
	if m.Type != "pong" {
		return fmt.Errorf("subscribe: got %s %s, want pong", m.Type, m.Payload)
	}
	return nil
}

func (c *clusterClient) write(ctx context.Context, v any) error {
	data, _ := json.Marshal(v)
	return c.conn.Write(ctx, websocket.MessageText, data)
}

func (c *clusterClient) read(ctx context.Context) (wsMsg, error) {
	var m wsMsg
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(data, &m)
}

// ask asks until the question is accepted; the same requestId makes a retry
// after an unclear failure the same ask.
func (c *clusterClient) ask(ctx context.Context, request, question string) error {
	body, _ := json.Marshal(map[string]any{"query": askQuery, "variables": map[string]any{"input": map[string]any{
		"sessionId": c.session, "message": question, "locale": "en", "requestId": request}}})
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			c.stats.askRetries.Add(1)
			c.askNode ^= 1
			time.Sleep(time.Duration(min(attempt, 10)) * 200 * time.Millisecond)
		}
		last = c.askOnce(ctx, body, request)
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("ask %s never accepted: %v", request, last)
}

func (c *clusterClient) askOnce(ctx context.Context, body []byte, request string) error {
	actx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(actx, http.MethodPost, "http://"+c.apis[c.askNode]+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Data struct {
			GetLlmResponse struct {
				RequestID string `json:"requestId"`
			} `json:"getLlmResponse"`
		} `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("status %d: %q", resp.StatusCode, raw)
	}
	if len(out.Errors) > 0 {
		return fmt.Errorf("status %d: %+v", resp.StatusCode, out.Errors)
	}
	if out.Data.GetLlmResponse.RequestID != request {
		return fmt.Errorf("accepted as %q, want %q", out.Data.GetLlmResponse.RequestID, request)
	}
	return nil
}

var errStalled = errors.New("no event for 30s")

// readAnswer reads the answer to request until END, checking that its events
// come gap-free and in order, and that its text is want.
func (c *clusterClient) readAnswer(ctx context.Context, request, want string) error {
	var text strings.Builder
	next := 0
	var trail []string
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := c.read(rctx)
		cancel()
		if err == nil && m.Type != "next" {
			err = fmt.Errorf("got %s %s", m.Type, m.Payload)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w; events so far %v", ctx.Err(), trail)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%w (on node %d, after cursor %s); events so far %v", errStalled, c.node, c.cursor, trail)
			}
			// The connection dropped or the subscription ended: resume
			// on either node after the last cursor.
			c.stats.resumes.Add(1)
			c.node ^= 1
			if err := c.connect(ctx, true); err != nil {
				return err
			}
			continue
		}
		var p struct {
			Data struct {
				Ev struct {
					Type      string `json:"type"`
					Message   string `json:"message"`
					RequestID string `json:"requestId"`
					Index     int    `json:"index"`
					Cursor    string `json:"cursor"`
				} `json:"onSendMessage"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return err
		}
		ev := p.Data.Ev
		c.cursor = ev.Cursor
		if ev.RequestID != request {
			continue // an earlier answer's tail, replayed on resume
		}
		trail = append(trail, fmt.Sprintf("%s#%d", ev.Type, ev.Index))
		switch {
		case ev.Type == "RESTART":
			c.stats.restarts.Add(1)
			text.Reset()
			next = 0
			continue
		case ev.Index != next:
			return fmt.Errorf("event %s has index %d, want %d; events %v", ev.Type, ev.Index, next, trail)
		}
		next++
		switch ev.Type {
		case "DELTA":
			text.WriteString(ev.Message)
		case "END":
			if text.String() != want {
				return fmt.Errorf("text %q, want %q", text.String(), want)
			}
			return nil
		case "START":
		default:
			return fmt.Errorf("answer ended with %s %q; events %v", ev.Type, ev.Message, trail)
		}
	}
}
