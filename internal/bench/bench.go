// Package bench is tokencast's load generator: an open-loop schedule of asks
// through a fake LLM whose token emission times are recorded on the clients'
// clock, so each token's delivery latency is measured, not estimated.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/tokencast/tokencast/internal/app"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/orchestrator"
)

// FakeModel is the name the in-process server gives the bench's fake LLM.
const FakeModel = "bench:fake"

// Config is every setting of `tokencast bench`.
type Config struct {
	Sessions    int
	Subscribers int
	Rate        float64       // sessions started per second; 0: spread over Ramp
	Ramp        time.Duration // all sessions start within it when Rate is 0
	Script      Script
	Dialect     string
	Grace       time.Duration

	Target      string // a running tokencast's /graphql URL; "" starts one in-process
	TargetPID   int    // the target's process id, for CPU and RSS when it is local
	Model       string // the model a --target serves the fake LLM as
	FakeLLMAddr string // where the OpenAI-compatible fake listens in --target mode
	APIKey      string
	ServerArgs  []string // extra `tokencast serve` flags for the in-process server

	Floor      bool
	JSON       bool
	CPUProfile string // write a CPU profile of the tokencast run here
	Trace      string // write a Go execution trace of the tokencast run here
	MemProfile string // write an allocation profile of the tokencast run here

	Idle int
	// IdleSessions is how many distinct sessions the idle connections watch
	// (0: one each), to tell the cost of a connection from that of a session.
	IdleSessions int
	IdleClient   string // "process" (a child tokencast bench) or "inproc"
	// IdleDial makes this process the idle client of another bench: it
	// subscribes Idle connections at this URL, says so, and holds them until
	// its stdin closes.
	IdleDial string
}

// Parse reads `tokencast bench` flags. It returns flag.ErrHelp, having
// printed usage to out, when help was asked for.
func Parse(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("tokencast bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&c.Sessions, "sessions", 20, "chat sessions, each asked one question")
	fs.IntVar(&c.Subscribers, "subscribers", 2, "subscribers per session")
	fs.Float64Var(&c.Rate, "rate", 0, "sessions started per second (open loop); 0: spread them evenly over --ramp")
	fs.DurationVar(&c.Ramp, "ramp", time.Second, "time over which the sessions start when --rate is 0")
	fs.DurationVar(&c.Script.FirstDelay, "first-token-delay", 100*time.Millisecond, "fake LLM: time from the call to the first token")
	fs.Float64Var(&c.Script.Rate, "token-rate", 20, "fake LLM: tokens per second of each answer")
	fs.IntVar(&c.Script.TokenSize, "token-bytes", 16, "fake LLM: bytes per token (at least its marker, about 8)")
	fs.IntVar(&c.Script.Tokens, "tokens", 50, "fake LLM: tokens per answer")
	fs.IntVar(&c.Script.AgentSteps, "agent-steps", 0, "fake LLM: make each answer an agent run of this many tool steps before its text, each a model call that, after --first-token-delay, calls the built-in calculator; subscribers ask for agent events and the report adds the time tokencast adds per step (in-process server only, not with --floor)")
	fs.StringVar(&c.Dialect, "dialect", DialectTransportWS, "subscribers' protocol: graphql-transport-ws, appsync (AppSync real-time, subprotocol graphql-ws), sse, events (AppSync Events), aisdk (the AI SDK's UI message stream) or agui (AG-UI); with aisdk and agui the answer streams in the ask's response, and a session's other subscribers resume it")
	fs.DurationVar(&c.Grace, "grace", 30*time.Second, "how long after the last answer is due to wait for stragglers")
	fs.StringVar(&c.Target, "target", "", "URL of a running tokencast's /graphql; empty starts one in this process (temp data dir)")
	fs.IntVar(&c.TargetPID, "target-pid", 0, "process id of a local --target, for its CPU and RSS")
	fs.StringVar(&c.Model, "model", "", "with --target: the model name under which that server calls the fake LLM (an openai provider pointed at --fake-llm-addr)")
	fs.StringVar(&c.FakeLLMAddr, "fake-llm-addr", "127.0.0.1:8089", "with --target: where the OpenAI-compatible fake LLM listens (POST /v1/chat/completions)")
	serverArgs := fs.String("server-args", "", "extra `tokencast serve` flags for the in-process server, space-separated (they win over the bench's own)")
	fs.BoolVar(&c.Floor, "floor", false, "also run the same load through a bare WebSocket push server and print ratios to it")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the tokencast run (server and load generator) to this file")
	fs.StringVar(&c.MemProfile, "memprofile", "", "write a heap profile of the process after the tokencast run (allocations since start: go tool pprof -sample_index=alloc_space) to this file")
	fs.StringVar(&c.Trace, "trace", "", "write a Go execution trace of the tokencast run (server and load generator) to this file, for go tool trace")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object instead of tables")
	fs.IntVar(&c.Idle, "idle", 0, "idle mode: hold this many subscribed WebSocket connections and report server memory and goroutines per connection")
	fs.IntVar(&c.IdleSessions, "idle-sessions", 0, "idle mode: distinct sessions the connections subscribe to (0: a session each)")
	fs.StringVar(&c.IdleClient, "idle-client", "process", "idle mode, in-process server: where the client connections live: process (a child tokencast bench, so only the server is measured) or inproc (figures include the client)")
	fs.StringVar(&c.IdleDial, "idle-dial", "", "internal: act as the idle client of another bench, dialing this /graphql URL")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: tokencast bench [flags]\n\n"+
			"Open-loop load through a fake LLM: every token's emission → receipt latency,\n"+
			"throughput, loss and duplication, server CPU and RSS. --idle N measures memory per\n"+
			"idle subscribed connection; --floor compares with a bare WebSocket push server.\n"+
			"--agent-steps N makes every answer an agent run of N tool steps (the built-in\n"+
			"calculator) and reports what tokencast adds per step: from a step's model call\n"+
			"to the next, less the model's own delay and the tool's durationMs.\n"+
			"An API key for a --target comes from TOKENCAST_BENCH_API_KEY.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.ServerArgs = strings.Fields(*serverArgs)
	c.APIKey = getenv("TOKENCAST_BENCH_API_KEY")
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if c.Sessions < 1 || c.Subscribers < 1 || c.Script.Tokens < 1 {
		errs = append(errs, errors.New("--sessions, --subscribers and --tokens must be at least 1"))
	}
	if c.Rate < 0 || c.Ramp < 0 || c.Script.Rate <= 0 || c.Script.FirstDelay < 0 || c.Idle < 0 || c.IdleSessions < 0 {
		errs = append(errs, errors.New("--rate, --ramp, --first-token-delay and --idle must not be negative, --token-rate positive"))
	}
	if c.Script.Tokens > 1<<20 {
		errs = append(errs, errors.New("--tokens: at most 1,048,576"))
	}
	if c.IdleClient != "process" && c.IdleClient != "inproc" {
		errs = append(errs, fmt.Errorf("--idle-client %q: want process or inproc", c.IdleClient))
	}
	if c.Target != "" && c.Idle == 0 && c.IdleDial == "" && c.Model == "" {
		errs = append(errs, errors.New("--target needs --model: the name under which that server calls this bench's fake LLM"))
	}
	if c.Target != "" && len(c.ServerArgs) > 0 {
		errs = append(errs, errors.New("--server-args is for the in-process server, not a --target"))
	}
	switch s := c.Script.AgentSteps; {
	case s < 0 || s > maxAgentSteps:
		errs = append(errs, fmt.Errorf("--agent-steps: from 0 to %d", maxAgentSteps))
	case s > 0 && c.Target != "":
		errs = append(errs, errors.New("--agent-steps needs the in-process server: the OpenAI-compatible fake a --target calls streams no tool calls"))
	case s > 0 && c.Floor:
		errs = append(errs, errors.New("--agent-steps and --floor: the floor server has no agent runs to compare with"))
	case s > 0 && (c.Dialect == DialectAISDK || c.Dialect == DialectAGUI):
		errs = append(errs, errors.New("--agent-steps reads each tool's own time from TOOL_RESULT, which --dialect "+c.Dialect+" does not carry: use "+DialectTransportWS+", "+DialectAppSync+", "+DialectSSE+" or "+DialectEvents))
	}
	return errors.Join(errs...)
}

// maxAgentSteps bounds --agent-steps: each model call's prompt holds every
// step before it.
const maxAgentSteps = 100

// gap is the time between two arrivals.
func (c *Config) gap() time.Duration {
	if c.Rate > 0 {
		return time.Duration(float64(time.Second) / c.Rate)
	}
	if c.Sessions <= 1 {
		return 0
	}
	return c.Ramp / time.Duration(c.Sessions)
}

// Run runs the bench the config describes and prints its report.
func Run(ctx context.Context, cfg *Config, stdout, stderr io.Writer) error {
	if cfg.IdleDial != "" {
		return idleClient(ctx, cfg, os.Stdin, stdout)
	}
	if cfg.Script.TokenSize < 10 {
		cfg.Script.TokenSize = 10 // room for the marker "~id.seq" and the separator
	}
	llm := &fakeLLM{script: cfg.Script, clock: newClock(), streams: &streams{}}

	graphqlURL, probe, scope := cfg.Target, prober(noProbe), "not measured (pass --target-pid for a local target)"
	if cfg.Target == "" {
		srv, err := startInProcess(ctx, cfg, llm, stderr)
		if err != nil {
			return err
		}
		defer srv.stop()
		graphqlURL, probe, scope = srv.url, selfProbe, "this process: the in-process server and the load generator together"
	} else {
		u, err := parseURL(cfg.Target)
		if err != nil {
			return err
		}
		graphqlURL = u.String()
		if cfg.TargetPID > 0 {
			probe, scope = pidProbe(cfg.TargetPID), fmt.Sprintf("target process %d", cfg.TargetPID)
		}
		if cfg.Idle == 0 {
			stopFake, err := serveFakeLLM(cfg.FakeLLMAddr, llm, stderr)
			if err != nil {
				return err
			}
			defer stopFake()
		}
	}

	rep := &Report{Mode: "load"}
	if cfg.Idle > 0 {
		idle, err := runIdle(ctx, cfg, graphqlURL, stderr)
		if err != nil {
			return err
		}
		rep = &Report{Mode: "idle", IdleReport: idle}
		return write(stdout, cfg, rep)
	}

	model := cfg.Model
	if cfg.Target == "" {
		model = FakeModel
	}
	dialect, err := newDialect(cfg.Dialect, graphqlURL, cfg.APIKey, model, cfg.Script.AgentSteps > 0)
	if err != nil {
		return err
	}
	plan := loadPlan{Sessions: cfg.Sessions, Subscribers: cfg.Subscribers, Gap: cfg.gap(), Grace: cfg.Grace, RunID: runID(), Script: cfg.Script}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if cfg.Trace != "" {
		stopTrace, err := startTrace(cfg.Trace)
		if err != nil {
			return err
		}
		defer stopTrace()
	}
	// A UI toolkit's protocol asks itself: its answer streams in the ask's
	// response.
	var ask asker = &graphqlAsker{url: graphqlURL, apiKey: cfg.APIKey, model: model, client: client}
	if a, ok := dialect.(asker); ok {
		ask = a
	}
	res, err := runLoad(ctx, plan, loadTarget{name: "tc", dialect: dialect, asker: ask}, llm, probe)
	if err != nil {
		return fmt.Errorf("tokencast run: %w", err)
	}
	rep.LoadReport = summarise(res, plan, serverName(cfg), cfg.Dialect, scope)
	if cfg.MemProfile != "" {
		if err := writeHeapProfile(cfg.MemProfile); err != nil {
			return err
		}
	}

	if cfg.Floor {
		floor, err := startFloor(llm)
		if err != nil {
			return err
		}
		defer floor.close()
		fres, err := runLoad(ctx, plan, loadTarget{name: "floor", dialect: &floorDialect{addr: floor.addr}, asker: &floorAsker{addr: floor.addr, client: client}}, llm, selfProbe)
		if err != nil {
			return fmt.Errorf("floor run: %w", err)
		}
		rep.Floor = summarise(fres, plan, "floor (bare gorilla/websocket push, in this process)", "websocket", "this process: the floor server and the load generator together")
		rep.RatioToFloor = ratios(rep.LoadReport, rep.Floor)
	}
	if err := write(stdout, cfg, rep); err != nil {
		return err
	}
	if rep.Lost > 0 || rep.Duplicated > 0 {
		return fmt.Errorf("%d tokens lost, %d duplicated", rep.Lost, rep.Duplicated)
	}
	if a := rep.Agent; a != nil && !a.complete() {
		return fmt.Errorf("agent runs incomplete: %d of %d tool results (%d errors), %d of %d STEP events",
			a.ToolResults, a.ToolResultsExpected, a.ToolErrors, a.StepEvents, a.StepEventsExpected)
	}
	return nil
}

func serverName(cfg *Config) string {
	if cfg.Target != "" {
		return cfg.Target
	}
	return "in-process"
}

func write(w io.Writer, cfg *Config, rep *Report) error {
	if cfg.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if rep.IdleReport != nil {
		printIdle(w, rep.IdleReport)
		return nil
	}
	printLoad(w, rep)
	return nil
}

func startCPUProfile(path string) (func(), error) {
	return startRecording("--cpuprofile", path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

func startTrace(path string) (func(), error) {
	return startRecording("--trace", path, trace.Start, trace.Stop)
}

// startRecording starts writing a profile or trace to path until the
// returned func is called; flag names the option in errors.
func startRecording(flag, path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return func() { stop(); f.Close() }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return f.Close()
}

// inProcess is a tokencast served from this process for the bench.
type inProcess struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	dir    string
}

// startInProcess serves tokencast with the fake LLM as model FakeModel, on a
// free loopback port and a temporary data dir, and waits until it is ready.
func startInProcess(ctx context.Context, cfg *Config, llm *fakeLLM, stderr io.Writer) (*inProcess, error) {
	dir, err := os.MkdirTemp("", "tokencast-bench-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conns := strconv.Itoa(max(20000, cfg.Idle+100))
	args := []string{
		"--addr", addr, "--data-dir", dir, "--mode", "dev",
		// A worker slot per session: every answer streams at once.
		"--workers", strconv.Itoa(max(8, cfg.Sessions)),
		"--ask-rate", "0", "--session-rate", "0", "--max-conns", conns, "--max-conns-per-principal", conns,
		// Every client connects from this machine's one address.
		"--max-pending-conns", conns, "--max-pending-conns-per-addr", conns,
		// Every chunk is its own frame unless --server-args says otherwise:
		// the figures measure delivery, not the coalescing window.
		"--coalesce-window", "0", "--log-level", "warn",
	}
	opts := app.Options{Models: map[string]orchestrator.Provider{FakeModel: provider{llm: llm}}}
	if steps := cfg.Script.AgentSteps; steps > 0 {
		// The fake's tool steps and its text are steps+1 model calls.
		args = append(args, "--agent-max-steps", strconv.Itoa(max(10, steps+1)))
		opts.ModelTools = map[string][]string{FakeModel: {"builtin." + benchTool}}
	}
	args = append(args, cfg.ServerArgs...)
	scfg, err := config.Parse(args, func(string) string { return "" }, stderr)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("in-process server: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &inProcess{url: "http://" + addr + "/graphql", cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { s.done <- app.ServeWith(sctx, scfg, "bench", io.Discard, stderr, opts) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			cancel()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("in-process server stopped: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("in-process server not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *inProcess) stop() {
	s.cancel()
	<-s.done
	os.RemoveAll(s.dir)
}

// serveFakeLLM serves the OpenAI-compatible fake for a --target server.
func serveFakeLLM(addr string, llm *fakeLLM, stderr io.Writer) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake LLM: %w", err)
	}
	srv := &http.Server{Handler: llm.openAIHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stderr, "fake LLM (OpenAI-compatible) on http://%s/v1\n", ln.Addr())
	return func() { _ = srv.Close() }, nil
}
