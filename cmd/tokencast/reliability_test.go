package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokencast/tokencast/internal/chat"
)

// proc is tokencast running as its own process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	out  *syncBuffer
	done chan struct{}
}

// spawn starts tokencast in a child process and waits until it is ready.
func spawn(t *testing.T, args ...string) *proc {
	t.Helper()
	p := spawnNoWaitAt(t, freeAddr(t), args...)
	p.waitReady()
	return p
}

// spawnAt is spawn on a given address, so a restarted process is found where
// its clients left it.
func spawnAt(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	p := spawnNoWaitAt(t, addr, args...)
	p.waitReady()
	return p
}

// spawnNoWait starts tokencast in a child process.
func spawnNoWait(t *testing.T, args ...string) *proc {
	t.Helper()
	return spawnNoWaitAt(t, freeAddr(t), args...)
}

func spawnNoWaitAt(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	return spawnEnvAt(t, addr, nil, args...)
}

// spawnEnvAt is spawnNoWaitAt with env ("NAME=value") added to the
// process's environment.
func spawnEnvAt(t *testing.T, addr string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, addr: addr, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"serve", "--addr", p.addr}, args...)...)
	p.cmd.Env = append([]string{asBinary + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// waitReady waits until the process's /readyz says ready.
func (p *proc) waitReady() {
	p.t.Helper()
	if err := p.ready(60 * time.Second); err != nil {
		p.t.Fatalf("%v: %s", err, p.out)
	}
}

// ready waits up to d for the process's /readyz to say ready.
func (p *proc) ready(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return errors.New("process exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process not ready after %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client talks to the process as tests talk to an in-process server.
func (p *proc) client() *server {
	return &server{t: p.t, addr: p.addr, scheme: "http", client: http.DefaultClient}
}

// kill ends the process the hard way, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// jetStreamAt connects to the NATS of a server started with --nats-listen,
// as an operator's tools would; ctx bounds the test's calls.
func jetStreamAt(t *testing.T, natsAddr string) (jetstream.JetStream, context.Context) {
	t.Helper()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return js, ctx
}

// workerArgs runs a worker process against an API process's NATS.
func workerArgs(natsAddr string, extra ...string) []string {
	return append([]string{"--role", "worker", "--nats-url", "nats://" + natsAddr, "--ack-wait", "1s",
		"--demo-ttft", "0", "--demo-token-interval", "25ms", "--coalesce-window", "0", "--workers", "2"}, extra...)
}

// apiWithListeningNATS runs the API in this process, its NATS open to workers.
func apiWithListeningNATS(t *testing.T, extra ...string) (*server, string) {
	natsAddr := freeAddr(t)
	s := start(t, "", nil, append([]string{"--role", "api", "--nats-listen", natsAddr, "--ack-wait", "1s"}, extra...)...)
	return s, natsAddr
}

// untilTerminal reads events of one request until it ends.
func (c *wsClient) untilTerminal(id, request string) []event {
	c.t.Helper()
	var evs []event
	for {
		ev := c.next(id)
		if ev.RequestID != request {
			c.t.Fatalf("event of %q while waiting for %q", ev.RequestID, request)
		}
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" || ev.Type == "CANCELLED" {
			return evs
		}
	}
}

// afterLastRestart returns the events of the last attempt.
func afterLastRestart(evs []event) []event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == "RESTART" {
			return evs[i+1:]
		}
	}
	return evs
}

func TestWorkerKilledMidAnswerRestartsIt(t *testing.T) {
	s, natsAddr := apiWithListeningNATS(t)
	w1 := spawn(t, workerArgs(natsAddr)...)
	c := subscribed(t, s, "s-crash", nil)
	req := s.ask(t, "", "s-crash", "survive a crash", "en")
	seen := []event{c.next("1"), c.next("1"), c.next("1")}
	w1.kill()
	spawn(t, workerArgs(natsAddr)...)
	evs := append(seen, c.untilTerminal("1", req)...)
	if !strings.Contains(types(evs), "RESTART") {
		t.Fatalf("events %s, want a RESTART after the crash", types(evs))
	}
	last := afterLastRestart(evs)
	checkAnswer(t, last, req, demoAnswer("en", "survive a crash"))
	turns := s.conversation(t, "", "s-crash")
	if len(turns) != 2 || turns[1].Status != "COMPLETE" || turns[1].Text != demoAnswer("en", "survive a crash") {
		t.Fatalf("conversation %+v, want exactly one complete assistant turn", turns)
	}
}

func TestRequestThatKeepsFailingEndsInErrorAndADeadLetter(t *testing.T) {
	s, natsAddr := apiWithListeningNATS(t, "--max-deliver", "2")
	c := subscribed(t, s, "s-doomed", nil)
	req := s.ask(t, "", "s-doomed", "doomed", "en")
	for i := range 2 {
		w := spawn(t, workerArgs(natsAddr, "--max-deliver", "2")...)
		// Kill each worker once it streams its own attempt: the second
		// attempt starts with RESTART.
		restarted := i == 0
		for {
			ev := c.next("1")
			restarted = restarted || ev.Type == "RESTART"
			if restarted && ev.Type == "DELTA" {
				break
			}
		}
		w.kill()
	}
	spawn(t, workerArgs(natsAddr, "--max-deliver", "2")...)
	evs := c.untilTerminal("1", req)
	last := evs[len(evs)-1]
	if last.Type != "ERROR" || last.Error == nil || last.Error.Code != "INTERNAL" {
		t.Fatalf("events %s ended with %+v, want ERROR INTERNAL", types(evs), last)
	}
	turns := s.conversation(t, "", "s-doomed")
	if len(turns) != 2 || turns[1].Status != "ERROR" {
		t.Fatalf("conversation %+v, want the answer stored as ERROR", turns)
	}
	js, ctx := jetStreamAt(t, natsAddr)
	stream, err := js.Stream(ctx, "TC_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "tc.dead")
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	var dl struct {
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
		Deliveries int `json:"deliveries"`
	}
	if err := json.Unmarshal(msg.Data, &dl); err != nil || dl.Request.ID != req || dl.Deliveries != 2 {
		t.Fatalf("dead letter %s, want request %s after 2 deliveries", msg.Data, req)
	}
}

func TestWholeProcessCrashLosesNoAcceptedRequest(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--demo-ttft", "500ms", "--demo-token-interval", "10ms", "--ack-wait", "1s"}
	p1 := spawn(t, args...)
	s1 := p1.client()
	req := s1.ask(t, "", "s-phoenix", "still there?", "en")
	p1.kill() // before the first token

	p2 := spawn(t, args...)
	s2 := p2.client()
	want := demoAnswer("en", "still there?")
	deadline := time.Now().Add(30 * time.Second)
	for {
		turns := s2.conversation(t, "", "s-phoenix")
		if len(turns) == 2 && turns[1].Status == "COMPLETE" {
			if turns[1].Text != want || turns[1].RequestID != req {
				t.Fatalf("answer after the crash %+v, want %q", turns[1], want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("request accepted before the crash never answered: %+v", turns)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestShutdownLetsTheAnswerFinishAndTellsClientsToReconnect(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, nil, "--demo-ttft", "0", "--demo-token-interval", "40ms", "--coalesce-window", "0", "--shutdown-timeout", "20s")
	c := subscribed(t, s, "s-drain", nil)
	req := s.ask(t, "", "s-drain", "finish me", "en")
	c.next("1")
	go s.cancel() // SIGTERM
	if code, _ := c.closeCode(); code != websocket.StatusServiceRestart {
		t.Fatalf("client closed with %d, want 1012 (reconnect)", code)
	}
	s.stop()
	s2 := start(t, dir, nil, fast...)
	turns := s2.conversation(t, "", "s-drain")
	if len(turns) != 2 || turns[1].Status != "COMPLETE" || turns[1].Text != demoAnswer("en", "finish me") || turns[1].RequestID != req {
		t.Fatalf("after a graceful stop: %+v, want the answer finished", turns)
	}
}

func TestShutdownTimeoutHandsTheRequestBack(t *testing.T) {
	dir := t.TempDir()
	slow := []string{"--demo-ttft", "0", "--demo-token-interval", "200ms", "--coalesce-window", "0", "--shutdown-timeout", "500ms", "--ack-wait", "1s"}
	s := start(t, dir, nil, slow...)
	c := subscribed(t, s, "s-handback", nil)
	req := s.ask(t, "", "s-handback", "too long to finish", "en")
	c.next("1")
	s.stop()
	// The next process takes the request over and answers it in full.
	s2 := start(t, dir, nil, "--demo-ttft", "300ms", "--demo-token-interval", "2ms", "--ack-wait", "1s")
	c2 := dialWS(t, s2)
	c2.init(nil)
	// It replays the answer in flight: the unfinished attempt and RESTART if
	// the new attempt has not started yet, else the new attempt from START.
	c2.subscribe("1", "s-handback")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first process:\n%s\nsecond process:\n%s", lastLines(s.stderr.String(), 15), lastLines(s2.stderr.String(), 15))
		}
	})
	evs := c2.untilTerminal("1", req)
	checkAnswer(t, afterLastRestart(evs), req, demoAnswer("en", "too long to finish"))
	if turns := s2.conversation(t, "", "s-handback"); len(turns) != 2 || turns[1].Status != "COMPLETE" {
		t.Fatalf("conversation %+v", turns)
	}
}

func TestSlowConsumerIsClosedAndOthersAreUnaffected(t *testing.T) {
	const repeat, answers = 8000, 6 // about 10 MB in all: more than socket buffers hold
	// The slow client reads nothing until the whole flood is answered, and
	// the server's write to it stays blocked all that while: the write
	// timeout must outlast the flood however long a busy machine takes (60 s
	// did not under -race beside a CPU hog), or the write times out halfway
	// through a frame and the connection ends without its close frame.
	s := start(t, "", nil, "--demo-ttft", "0", "--demo-token-interval", "0", "--coalesce-window", "2ms", "--coalesce-bytes", "16384",
		"--demo-repeat", fmt.Sprint(repeat), "--queue-size", "32", "--write-timeout", "1h")
	normal := subscribed(t, s, "s-slow", nil)
	// The slow client reads nothing until the end, through a small socket
	// buffer, as a stalled phone would.
	slow := &wsClient{t: t, conn: dialSmallBuffer(t, s)}
	slow.init(nil)
	slow.subscribe("1", "s-slow")
	slow.send(map[string]any{"type": "ping"})
	if m := slow.must(5 * time.Second); m.Type != "pong" {
		t.Fatalf("got %s", m.Type)
	}
	other := subscribed(t, s, "s-calm", nil) // another session on the same node
	var questions, requests []string
	var resumeFrom string
	for i := range answers {
		q := fmt.Sprintf("flood %d", i)
		questions = append(questions, q)
		req := s.ask(t, "", "s-slow", q, "en")
		requests = append(requests, req)
		if i == 0 {
			// The slow client sees the first event, then stalls.
			resumeFrom = slow.next("1").Cursor
		}
		evs := normal.answer("1", req)
		want := strings.Repeat(demoAnswer("en", questions...)+" ", repeat)
		checkRepeated(t, evs, req, want[:len(want)-1])
		if i == answers/2 {
			// Meanwhile another session is answered as usual.
			r := s.ask(t, "", "s-calm", "calm", "en")
			calm := strings.Repeat(demoAnswer("en", "calm")+" ", repeat)
			checkRepeated(t, other.answer("1", r), r, calm[:len(calm)-1])
		}
	}
	if code, reason := slow.closeCode(); code != 1013 {
		t.Fatalf("the slow subscriber was closed with %d %q, want 1013", code, reason)
	}
	// It resumes from its last cursor and gets every answer, in full.
	back := dialWS(t, s)
	back.init(nil)
	back.send(map[string]any{"id": "r", "type": "subscribe", "payload": map[string]any{
		"query":     resumeQuery,
		"variables": map[string]any{"s": "s-slow", "a": resumeFrom},
	}})
	for i, req := range requests {
		var evs []event
		if i == 0 {
			evs = append(evs, event{Type: "START", RequestID: req, Index: new(int)}) // seen before the stall
		}
		evs = append(evs, back.answer("r", req)...)
		if len(evs) < 3 || evs[len(evs)-1].Type != "END" {
			t.Fatalf("resumed answer %d: %s", i, types(evs))
		}
		for j, ev := range evs {
			if *ev.Index != j {
				t.Fatalf("resumed answer %d: event %d has index %d", i, j, *ev.Index)
			}
		}
	}
}

func dialSmallBuffer(t *testing.T, s *server) *websocket.Conn {
	t.Helper()
	dialer := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func checkRepeated(t *testing.T, evs []event, req, want string) {
	t.Helper()
	if evs[0].Type != "START" || evs[len(evs)-1].Type != "END" {
		t.Fatalf("events start %s end %s", evs[0].Type, evs[len(evs)-1].Type)
	}
	for i, ev := range evs {
		if *ev.Index != i || ev.RequestID != req {
			t.Fatalf("event %d: index %d request %s", i, *ev.Index, ev.RequestID)
		}
	}
	if got := text(evs); got != want {
		t.Fatalf("text of %d bytes, want %d", len(got), len(want))
	}
}

func TestChurnLeavesNothingBehind(t *testing.T) {
	s := start(t, "", nil, fast...)
	// Goroutines, heap and file descriptors of the running server (and this
	// test's clients, all closed by the end) before and after.
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before, goroutines, heapBefore := openFDs(t), runtime.NumGoroutine(), heap()
	const cycles, parallel = 10000, 16
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for w := range parallel {
		wg.Go(func() {
			ctx := context.Background()
			for i := w; i < cycles; i += parallel {
				conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
				if err != nil {
					errs <- err
					return
				}
				_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"connection_init"}`))
				_, _, _ = conn.Read(ctx)
				_ = conn.Write(ctx, websocket.MessageText, []byte(`{"id":"1","type":"subscribe","payload":{"query":"subscription{onSendMessage(sessionId:\"churn-`+string(rune('a'+w))+`\"){message}}"}}`))
				_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
				_, data, err := conn.Read(ctx)
				if err != nil || !strings.Contains(string(data), "pong") {
					errs <- fmt.Errorf("got %q, %v, want pong", data, err)
					return
				}
				conn.Close(websocket.StatusNormalClosure, "")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("cycle failed: %v\n%s", err, lastLines(s.stderr.String(), 10))
	}
	deadline := time.Now().Add(15 * time.Second)
	for openFDs(t) > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := openFDs(t); after > before+5 {
		t.Fatalf("%d file descriptors open after the churn, %d before", after, before)
	}
	// The server still runs: nothing of the 10,000 connections may remain.
	for runtime.NumGoroutine() > goroutines+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > goroutines+5 {
		t.Fatalf("%d goroutines after the churn, %d before", after, goroutines)
	}
	const slack = 8 << 20
	after := heap()
	t.Logf("goroutines %d → %d, heap %d → %d KiB", goroutines, runtime.NumGoroutine(), heapBefore>>10, after>>10)
	if after > heapBefore+slack {
		t.Fatalf("heap %d KiB after the churn, %d KiB before: more than %d KiB stayed", after>>10, heapBefore>>10, slack>>10)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestShutdownRefusesNewConnectionsAndAsks(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "0", "--demo-token-interval", "100ms", "--coalesce-window", "0", "--shutdown-timeout", "20s")
	c := subscribed(t, s, "s-closing", nil)
	req := s.ask(t, "", "s-closing", "keep me busy", "en")
	c.next("1")
	go s.cancel() // SIGTERM while the answer streams
	if code, _ := c.closeCode(); code != websocket.StatusServiceRestart {
		t.Fatalf("closed with %d, want 1012", code)
	}
	// The answer is still being written (the server waits for it), yet
	// nothing new gets in.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}}); err == nil {
		conn.CloseNow()
		t.Fatal("a new WebSocket was accepted during shutdown")
	}
	body := strings.NewReader(`{"query":"{ models { name } }"}`)
	if resp, err := http.Post(s.url(), "application/json", body); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a new request was served during shutdown")
		}
	}
	s.stop()
	// The answer in flight was allowed to finish.
	s2 := start(t, s.dataDir, nil, fast...)
	if turns := s2.conversation(t, "", "s-closing"); len(turns) != 2 || turns[1].Status != "COMPLETE" || turns[1].RequestID != req {
		t.Fatalf("after shutdown: %+v", turns)
	}
}

// TestWorkersBeyondTheQueuesPullLimit: --workers is how many answers one
// process streams at once, even past the 512 pulls a JetStream consumer lets
// wait at once: 600 slow answers all start, none waits in the queue, and no
// pull is refused on the way.
func TestWorkersBeyondTheQueuesPullLimit(t *testing.T) {
	const answers = 600
	s := start(t, "", nil, "--workers", strconv.Itoa(answers), "--ask-rate", "0", "--session-rate", "0", "--demo-ttft", "1m")
	for i := range answers {
		s.ask(t, "", fmt.Sprintf("pull-%d", i), "hello", "en")
	}
	want := fmt.Sprintf("tokencast_requests_in_flight %d\n", answers)
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + s.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), want) || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(string(body), want) {
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "tokencast_requests_") {
				t.Log(line)
			}
		}
		t.Fatalf("/metrics lacks %q: not every answer started", strings.TrimSpace(want))
	}
	// Idle slots hold no pull on the server, so none is refused.
	if strings.Contains(s.stderr.String(), "waiting for requests") {
		t.Errorf("workers failed to pull:\n%s", s.stderr)
	}
}

// TestSupersededAttemptStopsAtOnce: when a newer attempt claims an answer
// (a redelivery while this worker still ran, after a pause that outlasted
// the ack wait), this worker stops streaming at once, says nothing more and
// leaves the answer to the newer attempt.
func TestSupersededAttemptStopsAtOnce(t *testing.T) {
	natsAddr := freeAddr(t)
	s := start(t, "", nil, "--nats-listen", natsAddr, "--demo-ttft", "0", "--demo-token-interval", "50ms", "--coalesce-window", "0")
	c := subscribed(t, s, "s-taken", nil)
	req := s.ask(t, "", "s-taken", "tell me a long story", "en")
	for _, want := range []string{"START", "DELTA"} {
		if ev := c.next("1"); ev.Type != want || ev.RequestID != req {
			t.Fatalf("got %+v, want %s", ev, want)
		}
	}
	js, ctx := jetStreamAt(t, natsAddr)
	kv, err := js.KeyValue(ctx, "TC_ATTEMPTS")
	if err != nil {
		t.Fatal(err)
	}
	// What a newer attempt's claim writes.
	if _, err := kv.Put(ctx, "s-taken."+req, []byte(`{"attempt":2}`)); err != nil {
		t.Fatal(err)
	}
	// A token or two may have been on its way; a whole answer must not be.
	var after []event
	for {
		m, err := c.read(time.Second)
		if err != nil {
			break // nothing for a second: stopped
		}
		var p struct {
			Data struct {
				OnSendMessage event `json:"onSendMessage"`
			} `json:"data"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		after = append(after, p.Data.OnSendMessage)
		if len(after) > 3 {
			t.Fatalf("still streaming after a newer attempt claimed the answer: %s", types(after))
		}
	}
	for _, ev := range after {
		if ev.Type != "DELTA" {
			t.Fatalf("the superseded attempt published %s", types(after))
		}
	}
	if !strings.Contains(s.stderr.String(), "a newer attempt took the request over") {
		t.Errorf("no log of the takeover:\n%s", s.stderr)
	}
}

// TestShutdownTurnsReadinessFalseWhileDraining: after SIGTERM the port stays
// open for --drain-delay with /readyz failing, so a load balancer takes the
// node out before it goes; it is still alive (/healthz), and asks are
// refused meanwhile.
func TestShutdownTurnsReadinessFalseWhileDraining(t *testing.T) {
	s := start(t, "", nil, append(fast, "--drain-delay", "3s", "--shutdown-timeout", "10s")...)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatalf("GET %s while draining: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d %s", code, body)
	}
	go s.cancel() // SIGTERM
	var code int
	var body string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = get("/readyz"); code == http.StatusServiceUnavailable {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz during the drain: %d %s, want 503 shutting down", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during the drain: %d %s", code, body)
	}
	status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": "s-drain-ask", "message": "hi", "locale": "en"}})
	if len(resp.Errors) == 0 || resp.Errors[0].Extensions["code"] != chat.CodeUnavailable {
		t.Fatalf("an ask during the drain: %d %+v, want UNAVAILABLE", status, resp.Errors)
	}
	s.stop()
}

// TestDeadLettersAreForTheOperator: deadLetters lists the newest dead
// letters, oldest first, to a service key only.
func TestDeadLettersAreForTheOperator(t *testing.T) {
	const clientKey, serviceKey = "client-key-0123456789", "service-key-0123456789"
	natsAddr := freeAddr(t)
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": clientKey, "TOKENCAST_SERVICE_KEYS": "ops:" + serviceKey}, append(fast, "--nats-listen", natsAddr)...)
	js, ctx := jetStreamAt(t, natsAddr)
	// Three records as the workers write them.
	for i := range 3 {
		rec := fmt.Sprintf(`{"request":{"id":"r-%d","sessionId":"s-dead","message":"secret question","locale":"en","model":"demo:default"},"deliveries":%d,"reason":"max deliveries reached","at":"2026-11-25T10:00:0%dZ"}`, i, 5+i, i)
		if _, err := js.Publish(ctx, "tc.dead", []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	const query = `query($n: Int!) { deadLetters(last: $n) { sessionId requestId model deliveries reason at } }`
	status, resp := s.post(t, serviceKey, query, map[string]any{"n": 2})
	var data struct {
		DeadLetters []struct {
			SessionID, RequestID, Model, Reason, At string
			Deliveries                              int
		} `json:"deadLetters"`
	}
	if err := json.Unmarshal(resp.Data, &data); status != http.StatusOK || len(resp.Errors) > 0 || err != nil {
		t.Fatalf("deadLetters: %d %s %+v", status, resp.Data, resp.Errors)
	}
	got := data.DeadLetters
	if len(got) != 2 || got[0].RequestID != "r-1" || got[1].RequestID != "r-2" || got[1].Deliveries != 7 ||
		got[1].SessionID != "s-dead" || got[1].Model != "demo:default" || got[1].Reason != "max deliveries reached" || got[1].At != "2026-11-25T10:00:02Z" {
		t.Fatalf("the last 2 dead letters: %+v", got)
	}
	if strings.Contains(string(resp.Data), "secret question") {
		t.Fatal("the question's text is not part of a dead letter's listing")
	}
	_, resp = s.post(t, clientKey, query, map[string]any{"n": 2})
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeForbidden {
		t.Fatalf("a client key: %+v, want FORBIDDEN", resp.Errors)
	}
	_, resp = s.post(t, serviceKey, query, map[string]any{"n": 100000})
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeBadInput {
		t.Fatalf("last over the bound: %+v, want BAD_USER_INPUT", resp.Errors)
	}
}
