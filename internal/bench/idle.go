package bench

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// IdleReport is what idle mode measured: the server's cost of a subscribed
// connection that carries no traffic.
type IdleReport struct {
	Connections       int     `json:"connections"`
	Sessions          int     `json:"idle_sessions"`
	IdleClient        string  `json:"idle_client"`
	MemPerConn        float64 `json:"mem_per_conn_bytes"`
	HeapPerConn       float64 `json:"heap_per_conn_bytes"`
	StackPerConn      float64 `json:"stack_per_conn_bytes"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	RSSBefore         int64   `json:"rss_before_bytes"`
	RSSAfter          int64   `json:"rss_after_bytes"`
	HeapBefore        uint64  `json:"heap_before_bytes"`
	HeapAfter         uint64  `json:"heap_after_bytes"`
	GoroutinesBefore  int     `json:"goroutines_before"`
	GoroutinesAfter   int     `json:"goroutines_after"`
	// Projection100k is RSS for 100,000 such connections, from the per-connection figure.
	Projection100k int64   `json:"projection_100k_conns_bytes"`
	ConnectSeconds float64 `json:"connect_s"`
	Note           string  `json:"note,omitempty"`
}

// memSample is the server's memory after the garbage collector settled.
type memSample struct {
	rss        int64
	heap       uint64 // live heap (HeapAlloc after a GC)
	stack      uint64
	goroutines int
}

// settled collects garbage, returns freed pages to the OS and waits a little
// so that RSS reflects what is alive.
func settled() memSample {
	for range 3 {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(300 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _, _ := memOf("self")
	return memSample{rss: rss, heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// runIdle opens cfg.Idle subscribed connections and measures the server
// before and after. Heap and goroutines are only known for an in-process
// server; for a --target only its RSS (with --target-pid).
func runIdle(ctx context.Context, cfg *Config, graphqlURL string, stderr io.Writer) (*IdleReport, error) {
	if cfg.Dialect != DialectTransportWS {
		return nil, fmt.Errorf("idle mode subscribes over %s only for now, not %q", DialectTransportWS, cfg.Dialect)
	}
	inProcess := cfg.Target == ""
	measure := func() memSample {
		if inProcess {
			return settled()
		}
		var m memSample
		if cfg.TargetPID > 0 {
			time.Sleep(2 * time.Second) // the target's own GC has to settle
			m.rss, _, _ = memOf(strconv.Itoa(cfg.TargetPID))
		}
		return m
	}
	rep := &IdleReport{Connections: cfg.Idle, Sessions: cmp.Or(cfg.IdleSessions, cfg.Idle), IdleClient: "separate process (tokencast bench --idle-dial)"}
	if inProcess && cfg.IdleClient == "inproc" {
		rep.IdleClient = "this process"
		rep.Note = "the client connections share the process: the figures include the client's own cost (an upper bound for the server)"
	}
	before := measure()
	start := time.Now()

	var release func()
	if inProcess && cfg.IdleClient == "inproc" {
		subs, err := openIdle(ctx, graphqlURL, cfg.APIKey, cfg.Idle, cfg.IdleSessions)
		if err != nil {
			return nil, err
		}
		release = func() {
			for _, s := range subs {
				s.Close()
			}
		}
	} else {
		var err error
		release, err = spawnIdleClient(ctx, graphqlURL, cfg.Idle, cfg.IdleSessions, stderr)
		if err != nil {
			return nil, err
		}
	}
	rep.ConnectSeconds = round3(time.Since(start).Seconds())
	after := measure()
	release()

	n := float64(cfg.Idle)
	per := func(a, b int64) float64 { return math.Round(float64(a-b) / n) }
	rep.RSSBefore, rep.RSSAfter = before.rss, after.rss
	rep.MemPerConn = per(after.rss, before.rss)
	rep.Projection100k = int64(rep.MemPerConn * 100_000)
	if inProcess {
		rep.HeapBefore, rep.HeapAfter = before.heap, after.heap
		rep.GoroutinesBefore, rep.GoroutinesAfter = before.goroutines, after.goroutines
		rep.HeapPerConn = per(int64(after.heap), int64(before.heap))
		rep.StackPerConn = per(int64(after.stack), int64(before.stack))
		rep.GoroutinesPerConn = round3(float64(after.goroutines-before.goroutines) / n)
	} else if rep.Note == "" {
		rep.Note = "a --target's heap and goroutines are not visible from here; RSS needs --target-pid"
	}
	return rep, nil
}

// openIdle subscribes n connections and leaves them idle (nothing reads them:
// the server sends nothing to an idle subscription).
func openIdle(ctx context.Context, graphqlURL, apiKey string, n, sessions int) ([]Subscriber, error) {
	if sessions <= 0 {
		sessions = n
	}
	d := &transportWS{url: wsURL(graphqlURL), apiKey: apiKey, query: subscription(false)}
	subs := make([]Subscriber, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range subs {
		g.Go(func() error {
			sctx, cancel := context.WithTimeout(gctx, 30*time.Second)
			defer cancel()
			s, err := d.Subscribe(sctx, fmt.Sprintf("idle-%d", i%sessions))
			if err != nil {
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			subs[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		for _, s := range subs {
			if s != nil {
				s.Close()
			}
		}
		return nil, err
	}
	return subs, nil
}

// spawnIdleClient runs this executable as `tokencast bench --idle-dial`, so
// the client's connections, file descriptors and memory are in another
// process, and waits until it reports them subscribed.
func spawnIdleClient(ctx context.Context, graphqlURL string, n, sessions int, stderr io.Writer) (func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("idle client: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "--idle-dial", graphqlURL, "--idle", strconv.Itoa(n), "--idle-sessions", strconv.Itoa(sessions))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("idle client: %w", err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready ") {
		release()
		return nil, fmt.Errorf("idle client (%s bench --idle-dial; run from the tokencast binary, or use --idle-client inproc) said %q: %v", exe, strings.TrimSpace(line), err)
	}
	return release, nil
}

// idleClient is the child side: subscribe, say "ready N", hold until stdin closes.
func idleClient(ctx context.Context, cfg *Config, stdin io.Reader, stdout io.Writer) error {
	subs, err := openIdle(ctx, cfg.IdleDial, cfg.APIKey, cfg.Idle, cfg.IdleSessions)
	if err != nil {
		fmt.Fprintf(stdout, "error %v\n", err)
		return err
	}
	fmt.Fprintf(stdout, "ready %d\n", len(subs))
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	for _, s := range subs {
		s.Close()
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return nil
}

func printIdle(w io.Writer, r *IdleReport) {
	fmt.Fprintf(w, "tokencast bench --idle: %d subscribed idle WebSocket connections on %d sessions (client: %s), connected in %.1f s\n", r.Connections, r.Sessions, r.IdleClient, r.ConnectSeconds)
	fmt.Fprintf(w, "  server RSS per connection      %8.0f B  (%.1f KiB; %d → %d MiB)\n", r.MemPerConn, r.MemPerConn/1024, r.RSSBefore>>20, r.RSSAfter>>20)
	fmt.Fprintf(w, "  Go heap per connection         %8.0f B\n", r.HeapPerConn)
	fmt.Fprintf(w, "  goroutine stacks per connection %7.0f B\n", r.StackPerConn)
	fmt.Fprintf(w, "  goroutines per connection      %8.3f\n", r.GoroutinesPerConn)
	fmt.Fprintf(w, "  projected RSS for 100,000      %8.0f MiB\n", float64(r.Projection100k)/(1<<20))
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
}
