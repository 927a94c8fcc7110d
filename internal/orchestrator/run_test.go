package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// The agent run's rules, played as the worker's are (orchestrator_test.go)
// with a toolbox of scripted tools: what a subscriber of agent events sees,
// what the next model call is given back, and what the conversation keeps.

// agentModels is model "m" of provider p, offered the tools named, each
// under its policy when it has one.
func agentModels(p *fakeProvider, policies map[string]ToolPolicy, tools ...string) map[string]Model {
	specs := make([]chat.ToolSpec, 0, len(tools))
	for _, name := range tools {
		specs = append(specs, chat.ToolSpec{Name: name, Description: "the " + name + " tool", InputSchema: json.RawMessage(`{"type":"object"}`)})
	}
	return map[string]Model{"m": {Ref: "fake:m", Provider: p, ID: "m", Tools: specs, Policies: policies}}
}

// agentConfig is testConfig with the tools of tb.
func agentConfig(tb *fakeToolbox) Config {
	cfg := testConfig()
	cfg.Tools = tb
	return cfg
}

// asked stores req's question, as the API does before it queues the
// request.
func asked(t *testing.T, q *fakeQueue, req chat.Request) {
	t.Helper()
	err := q.AppendTurn(context.Background(), req.SessionID, chat.Turn{
		RequestID: req.ID, Role: chat.RoleUser, Text: req.Message, Status: chat.StatusComplete, Locale: req.Locale,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// diedAfter stores run as the IN_PROGRESS turn of req's first attempt, as
// its worker did before it died.
func diedAfter(t *testing.T, q *fakeQueue, req chat.Request, run []chat.Message) {
	t.Helper()
	err := q.AppendTurn(context.Background(), req.SessionID, chat.Turn{
		RequestID: req.ID, Role: chat.RoleAssistant, Status: chat.StatusInProgress, Attempt: 1, Run: run,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// shownRun sums up events as a subscriber of agent events reads them.
func shownRun(evs []chat.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		s := string(ev.Type)
		switch {
		case ev.Type == chat.EventDelta || ev.Type == chat.EventMessage || ev.Type == chat.EventReasoning:
			s += " " + ev.Message
		case ev.Type == chat.EventError && ev.Error != nil:
			s += " " + ev.Error.Code
		case ev.Type == chat.EventToolCallStart && ev.Tool != nil:
			s += " " + ev.Tool.CallID + " " + ev.Tool.Name
		case ev.Type == chat.EventToolCallDelta && ev.Tool != nil:
			s += " " + ev.Tool.CallID + " " + ev.Message
		case ev.Type == chat.EventToolCall && ev.Tool != nil:
			s += " " + ev.Tool.CallID + " " + ev.Tool.Name + " " + string(ev.Tool.Input)
		case ev.Type == chat.EventToolResult && ev.Tool != nil:
			s += " " + ev.Tool.CallID + " " + ev.Tool.Name + ": " + ev.Tool.Output
			if ev.Tool.IsError {
				s += " (error)"
			}
			if ev.Tool.Truncated {
				s += " (truncated)"
			}
		case ev.Type == chat.EventStep && ev.Step != nil:
			s += fmt.Sprintf(" %d %s", ev.Step.Number, ev.Step.Reason)
			if ev.Step.Continues {
				s += " continues"
			}
		case ev.Type == chat.EventSource && ev.Source != nil:
			s += " " + ev.Source.URL
		case ev.Type == chat.EventApprovalRequested && ev.Approval != nil:
			s += " " + ev.Approval.CallID + " " + ev.Approval.Tool
		case ev.Type == chat.EventApproval && ev.Approval != nil:
			if ev.Approval.Approved {
				s += " " + ev.Approval.CallID + " approved"
			} else {
				s += " " + ev.Approval.CallID + " denied: " + ev.Approval.Reason
			}
		case ev.Type.Agent():
			s += " without its details"
		}
		out = append(out, s)
	}
	return out
}

// inAnyOrder sorts each run of TOOL_RESULT lines of shownRun: calls that
// run at once end in any order.
func inAnyOrder(lines []string) []string {
	out := slices.Clone(lines)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && strings.HasPrefix(out[j], string(chat.EventToolResult)+" ") {
			j++
		}
		slices.Sort(out[i:j])
		i = max(j, i+1)
	}
	return out
}

// checkShown fails t unless evs read as want, results of calls run at once
// in any order.
func checkShown(t *testing.T, evs []chat.Event, want []string) {
	t.Helper()
	if got := inAnyOrder(shownRun(evs)); !slices.Equal(got, inAnyOrder(want)) {
		t.Errorf("subscribers saw\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// checkMessages fails t unless got are want, block by block and byte for
// byte; how long a call ran is not compared.
// checkMessages compares messages without their durations and the usage of
// their steps (checked on their own).
func checkMessages(t *testing.T, what string, got, want []chat.Message) {
	t.Helper()
	got = slices.Clone(got)
	for i := range got {
		got[i].Usage = nil
		got[i].Blocks = slices.Clone(got[i].Blocks)
		for j := range got[i].Blocks {
			got[i].Blocks[j].DurationMillis = 0
		}
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "\t", "  ")
		w, _ := json.MarshalIndent(want, "\t", "  ")
		t.Errorf("%s:\n\t%s\nwant\n\t%s", what, g, w)
	}
}

// checkCallsAnswered fails t unless every tool call of msgs is answered,
// in call order, by the message after it: a model refuses a history with a
// call left unanswered.
func checkCallsAnswered(t *testing.T, msgs []chat.Message) {
	t.Helper()
	for i, m := range msgs {
		calls := toolCalls(m)
		if len(calls) == 0 {
			continue
		}
		var answered []string
		if i+1 < len(msgs) && msgs[i+1].Role == chat.RoleUser {
			for _, b := range msgs[i+1].Blocks {
				if b.Kind == chat.BlockToolResult {
					answered = append(answered, b.CallID)
				}
			}
		}
		var want []string
		for _, c := range calls {
			want = append(want, c.CallID)
		}
		if !slices.Equal(answered, want) {
			t.Errorf("message %d calls %q; the next message answers %q", i, want, answered)
		}
	}
}

// progress is every record of the run the worker stored while req was in
// progress, in order.
func progress(q *fakeQueue, req chat.Request) [][]chat.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [][]chat.Message
	for _, t := range q.turns {
		if t.RequestID == req.ID && t.Role == chat.RoleAssistant && t.Status == chat.StatusInProgress {
			out = append(out, t.Run)
		}
	}
	return out
}

// results is the message that carries tool results back to a model.
func results(blocks ...chat.Block) chat.Message {
	return chat.Message{Role: chat.RoleUser, Blocks: blocks}
}

func result(id, name, text string) chat.Block {
	return chat.Block{Kind: chat.BlockToolResult, CallID: id, Name: name, Text: text}
}

func failed(id, name, text string) chat.Block {
	b := result(id, name, text)
	b.IsError = true
	return b
}

func call(id, name, input string) chat.Block {
	return chat.Block{Kind: chat.BlockToolCall, CallID: id, Name: name, Input: json.RawMessage(input)}
}

func assistant(blocks ...chat.Block) chat.Message {
	return chat.Message{Role: chat.RoleAssistant, Blocks: blocks}
}

func text(s string) chat.Block { return chat.Block{Kind: chat.BlockText, Text: s} }

func source(url string) chat.Block {
	return chat.Block{Kind: chat.BlockSource, Source: &chat.Source{URL: url}}
}

// A run that reasons, calls two tools at once and answers with their
// results: subscribers see every step as it happens, the second model call
// is given back the first one's blocks byte for byte with the results in
// call order, and the conversation keeps the same.
func TestRunCallsToolsBetweenModelCalls(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	meet := together(2)
	tb := toolbox(map[string]tool{"add": meet("3"), "echo": meet("x")})
	signature := "EqQBCkYIBxgCKkD+/sig=="
	redacted := []byte{0x00, 0xff, 'r', 0xfe, '\n'}
	buf := slices.Clone(redacted) // the provider's, reused once emitted
	first := chat.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15, ReasoningTokens: 3}
	second := chat.Usage{InputTokens: 30, OutputTokens: 2, TotalTokens: 32, CacheReadTokens: 7}
	reasons := emits(chat.Final{Usage: first, StopReason: "tool_use"},
		chat.Part{Kind: chat.PartReasoning, Text: "Add, "},
		chat.Part{Kind: chat.PartReasoning, Text: "then echo."},
		chat.Part{Kind: chat.PartSignature, Text: signature},
		chat.Part{Kind: chat.PartRedacted, Data: buf},
		chat.Part{Kind: chat.PartToolStart, CallID: "c1", Name: "add"},
		chat.Part{Kind: chat.PartToolStart, CallID: "c2", Name: "echo"},
		chat.Part{Kind: chat.PartToolDelta, CallID: "c1", Text: `{"a":1,`},
		chat.Part{Kind: chat.PartToolDelta, CallID: "c2", Text: `{"s":`},
		chat.Part{Kind: chat.PartToolDelta, CallID: "c1", Text: `"b":2}`},
		chat.Part{Kind: chat.PartToolDelta, CallID: "c2", Text: `"x"}`},
		chat.Part{Kind: chat.PartToolEnd, CallID: "c1"},
		chat.Part{Kind: chat.PartToolEnd, CallID: "c2"},
	)
	p := script(
		func(ctx context.Context, emit func(chat.Part) error) (chat.Final, error) {
			final, err := reasons(ctx, emit)
			buf[0] = 'X'
			return final, err
		},
		emits(chat.Final{Usage: second, StopReason: "end_turn"},
			chat.TextPart("3 and x"),
			chat.Part{Kind: chat.PartSource, Source: &chat.Source{Title: "Sums", URL: "https://example.com/sums"}},
		),
	)
	ms := agentModels(p, nil, "add", "echo")
	startWorker(t, q, agentConfig(tb), ms)
	req := newRequest("m")
	asked(t, q, req)
	d := q.deliver(req, 1)

	evs := ended(t, q, d)
	checkShown(t, evs, []string{
		"START",
		"REASONING Add, ",
		"REASONING then echo.",
		"TOOL_CALL_START c1 add",
		"TOOL_CALL_START c2 echo",
		`TOOL_CALL_DELTA c1 {"a":1,`,
		`TOOL_CALL_DELTA c2 {"s":`,
		`TOOL_CALL_DELTA c1 "b":2}`,
		`TOOL_CALL_DELTA c2 "x"}`,
		`TOOL_CALL c1 add {"a":1,"b":2}`,
		`TOOL_CALL c2 echo {"s":"x"}`,
		"STEP 1 tool_use continues",
		"TOOL_RESULT c1 add: 3",
		"TOOL_RESULT c2 echo: x",
		"DELTA 3 and x",
		"SOURCE https://example.com/sums",
		"STEP 2 end_turn",
		"END",
	})
	checkAnswer(t, evs)
	var steps []chat.Usage
	for _, ev := range evs {
		if ev.Type == chat.EventStep && ev.Usage != nil {
			steps = append(steps, *ev.Usage)
		}
	}
	if !slices.Equal(steps, []chat.Usage{first, second}) {
		t.Errorf("STEP events say usage %+v, want %+v then %+v", steps, first, second)
	}
	sum := first
	sum.Add(second)
	if end := evs[len(evs)-1]; end.Usage == nil || *end.Usage != sum || end.StopReason != "end_turn" {
		t.Errorf("END says usage %+v, stop %q; want %+v, end_turn", end.Usage, end.StopReason, sum)
	}
	if got, want := tb.input("add"), []string{`{"a":1,"b":2}`}; !slices.Equal(got, want) {
		t.Errorf("add was called with %q, want %q", got, want)
	}
	if got, want := tb.input("echo"), []string{`{"s":"x"}`}; !slices.Equal(got, want) {
		t.Errorf("echo was called with %q, want %q", got, want)
	}

	step := assistant(
		chat.Block{Kind: chat.BlockReasoning, Text: "Add, then echo.", Signature: signature},
		chat.Block{Kind: chat.BlockRedacted, Data: redacted},
		call("c1", "add", `{"a":1,"b":2}`),
		call("c2", "echo", `{"s":"x"}`),
	)
	answered := results(result("c1", "add", "3"), result("c2", "echo", "x"))
	question := chat.Message{Role: chat.RoleUser, Text: req.Message}
	if got := p.called(); got != 2 {
		t.Fatalf("the model was called %d times, want twice", got)
	}
	checkMessages(t, "the first model call was asked", p.prompt(t, 0).Messages, []chat.Message{question})
	checkMessages(t, "the second model call was asked", p.prompt(t, 1).Messages, []chat.Message{question, step, answered})
	for i := range 2 {
		if got := p.prompt(t, i).Tools; !reflect.DeepEqual(got, ms["m"].Tools) {
			t.Errorf("model call %d was offered tools %+v", i+1, got)
		}
	}

	checkTurn(t, q, req, chat.StatusComplete, "3 and x")
	turn, _ := q.turn(req.SessionID, req.ID)
	cited := source("https://example.com/sums")
	cited.Source.Title = "Sums"
	checkMessages(t, "the conversation keeps the run", turn.Run, []chat.Message{step, answered, assistant(text("3 and x"), cited)})
	if turn.Usage == nil || *turn.Usage != sum {
		t.Errorf("the conversation keeps usage %+v, want %+v", turn.Usage, sum)
	}
	// Each step keeps its own usage, so a run another worker takes over
	// still counts the calls made before.
	var stepSum chat.Usage
	for _, m := range turn.Run {
		if m.Role == chat.RoleAssistant {
			if m.Usage == nil {
				t.Fatalf("a stored step has no usage: %+v", m)
			}
			stepSum.Add(*m.Usage)
		}
	}
	if stepSum != sum {
		t.Errorf("the stored steps' usage adds up to %+v, want %+v", stepSum, sum)
	}
	// Both tools may run twice (idempotent, no approval): the step is
	// stored with its first result, then with each result: a worker
	// that takes over from any record never runs a call whose result it
	// had. (A step stored before its tools run: the restart tests.)
	stored := progress(q, req)
	if len(stored) != 2 {
		t.Fatalf("the run was stored %d times in progress, want 2 (the step with each result)", len(stored))
	}
	if got := stored[0]; len(got) != 2 || len(got[1].Blocks) != 1 {
		t.Errorf("the step with its first result was stored as %+v", got)
	} else {
		checkMessages(t, "the step, stored with its first result", got[:1], []chat.Message{step})
	}
	checkMessages(t, "the last record in progress", stored[1], []chat.Message{step, answered})
	checkSettled(t, d, 1, 0)
}

// A tool that fails, one the model was never offered and one that cannot
// be run: the run goes on, and the model reads why each call failed; the
// cause of a failure to run stays in the log.
func TestRunToolFailuresGoToTheModel(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	tb := toolbox(map[string]tool{
		"flaky":  failsWith("disk on fire"),
		"broken": cannotRun(errors.New("dial tcp 10.0.0.7:443: connection refused")),
		"secret": replies("never run"),
	})
	p := script(
		callsTools(chat.Usage{}, toolCall("c1", "flaky", "{}"), toolCall("c2", "secret", "{}"), toolCall("c3", "broken", "{}")),
		answers("Sorry."),
	)
	startWorker(t, q, agentConfig(tb), agentModels(p, nil, "flaky", "broken"))
	req := newRequest("m")
	asked(t, q, req)
	d := q.deliver(req, 1)

	evs := ended(t, q, d)
	checkShown(t, evs, []string{
		"START",
		"TOOL_CALL_START c1 flaky", "TOOL_CALL_DELTA c1 {}", "TOOL_CALL c1 flaky {}",
		"TOOL_CALL_START c2 secret", "TOOL_CALL_DELTA c2 {}", "TOOL_CALL c2 secret {}",
		"TOOL_CALL_START c3 broken", "TOOL_CALL_DELTA c3 {}", "TOOL_CALL c3 broken {}",
		"STEP 1 tool_use continues",
		"TOOL_RESULT c1 flaky: disk on fire (error)",
		`TOOL_RESULT c2 secret: there is no tool named "secret" (error)`,
		"TOOL_RESULT c3 broken: the tool could not be run (error)",
		"DELTA Sorry.",
		"STEP 2 end_turn",
		"END",
	})
	checkAnswer(t, evs)
	for _, ev := range evs {
		if ev.Tool != nil && strings.Contains(ev.Tool.Output, "10.0.0.7") {
			t.Errorf("%s shows the cause of a failure to run: %q", ev.Type, ev.Tool.Output)
		}
	}
	if got := tb.called("secret"); got != 0 {
		t.Errorf("a tool the model was not offered ran %d times", got)
	}
	prompt := p.prompt(t, 1).Messages
	checkMessages(t, "the model was given back", prompt[len(prompt)-1:], []chat.Message{results(
		failed("c1", "flaky", "disk on fire"),
		failed("c2", "secret", `there is no tool named "secret"`),
		failed("c3", "broken", "the tool could not be run"),
	)})
	checkTurn(t, q, req, chat.StatusComplete, "Sorry.")
	checkSettled(t, d, 1, 0)
}

// Each bound of a run: too many model calls and too long a run end it with
// their codes; a tool too slow or too talkative is cut, and the model told.
func TestRunBounds(t *testing.T) {
	t.Parallel()
	t.Run("model calls", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		tb := toolbox(map[string]tool{"add": replies("3")})
		p := script(callsTools(chat.Usage{OutputTokens: 1}, toolCall("c", "add")))
		cfg := agentConfig(tb)
		cfg.Agent.MaxSteps = 2
		startWorker(t, q, cfg, agentModels(p, nil, "add"))
		req := newRequest("m")
		asked(t, q, req)
		d := q.deliver(req, 1)

		evs := ended(t, q, d)
		checkShown(t, evs, []string{
			"START",
			"TOOL_CALL_START c add", "TOOL_CALL c add {}", "STEP 1 tool_use continues", "TOOL_RESULT c add: 3",
			"TOOL_CALL_START c add", "TOOL_CALL c add {}", "STEP 2 tool_use continues", "TOOL_RESULT c add: 3",
			apology(), "ERROR STEP_LIMIT",
		})
		checkAnswer(t, evs)
		if p.called() != 2 || tb.called("add") != 2 {
			t.Errorf("the model was called %d times and the tool %d, want twice each", p.called(), tb.called("add"))
		}
		checkTurn(t, q, req, chat.StatusIncomplete, "")
		turn, _ := q.turn(req.SessionID, req.ID)
		step, answered := assistant(call("c", "add", "{}")), results(result("c", "add", "3"))
		checkMessages(t, "the conversation keeps the run", turn.Run, []chat.Message{step, answered, step, answered})
		checkSettled(t, d, 1, 0)
	})
	t.Run("a tool's time", func(t *testing.T) {
		t.Parallel()
		cases := []struct {
			name   string
			bound  func(*Config) map[string]ToolPolicy
			within string
		}{
			{"by its policy", func(cfg *Config) map[string]ToolPolicy {
				cfg.Agent.ToolTimeout = time.Hour
				return map[string]ToolPolicy{"slow": {Timeout: 3 * time.Millisecond}}
			}, "3ms"},
			{"by the run's default", func(cfg *Config) map[string]ToolPolicy {
				cfg.Agent.ToolTimeout = 4 * time.Millisecond
				return nil
			}, "4ms"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				q := newFakeQueue()
				halted := make(chan error, 1)
				tb := toolbox(map[string]tool{"slow": blocks(nil, halted)})
				p := script(callsTools(chat.Usage{}, toolCall("c", "slow")), answers("It timed out."))
				cfg := agentConfig(tb)
				policies := tc.bound(&cfg)
				startWorker(t, q, cfg, agentModels(p, policies, "slow"))
				req := newRequest("m")
				asked(t, q, req)
				d := q.deliver(req, 1)

				evs := ended(t, q, d)
				said := "the tool did not answer within " + tc.within
				checkShown(t, evs, []string{
					"START",
					"TOOL_CALL_START c slow", "TOOL_CALL c slow {}", "STEP 1 tool_use continues",
					"TOOL_RESULT c slow: " + said + " (error)",
					"DELTA It timed out.", "STEP 2 end_turn", "END",
				})
				if err := await(t, "the tool's call to stop", halted); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("the tool's call was stopped by %v, want its deadline", err)
				}
				prompt := p.prompt(t, 1).Messages
				checkMessages(t, "the model was given back", prompt[len(prompt)-1:], []chat.Message{results(failed("c", "slow", said))})
				checkTurn(t, q, req, chat.StatusComplete, "It timed out.")
			})
		}
	})
	t.Run("a tool's output", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		// The cap falls inside the é: it is cut before it, never through.
		tb := toolbox(map[string]tool{"cat": replies("012345678éxyz")})
		p := script(callsTools(chat.Usage{}, toolCall("c", "cat")), answers("Long."))
		cfg := agentConfig(tb)
		cfg.Agent.MaxToolOutput = 10
		startWorker(t, q, cfg, agentModels(p, nil, "cat"))
		req := newRequest("m")
		asked(t, q, req)
		d := q.deliver(req, 1)

		evs := ended(t, q, d)
		cut := "012345678\n[truncated: 5 more bytes]"
		checkShown(t, evs, []string{
			"START",
			"TOOL_CALL_START c cat", "TOOL_CALL c cat {}", "STEP 1 tool_use continues",
			"TOOL_RESULT c cat: " + cut + " (truncated)",
			"DELTA Long.", "STEP 2 end_turn", "END",
		})
		want := result("c", "cat", cut)
		want.Truncated = true
		prompt := p.prompt(t, 1).Messages
		checkMessages(t, "the model was given back", prompt[len(prompt)-1:], []chat.Message{results(want)})
	})
	t.Run("the run's time", func(t *testing.T) {
		t.Parallel()
		q := newFakeQueue()
		started, halted := make(chan struct{}), make(chan error, 1)
		tb := toolbox(map[string]tool{"slow": blocks(started, halted)})
		p := script(callsTools(chat.Usage{}, toolCall("c", "slow")), answers("never"))
		cfg := agentConfig(tb)
		cfg.Agent.RunTimeout = 50 * time.Millisecond
		startWorker(t, q, cfg, agentModels(p, nil, "slow"))
		req := newRequest("m")
		asked(t, q, req)
		d := q.deliver(req, 1)

		await(t, "the tool to run", started)
		if err := await(t, "the tool's call to stop", halted); !errors.Is(err, errRunTimeout) {
			t.Errorf("the tool's call was stopped by %v, want the run's timeout", err)
		}
		evs := ended(t, q, d)
		checkShown(t, evs, []string{
			"START",
			"TOOL_CALL_START c slow", "TOOL_CALL c slow {}", "STEP 1 tool_use continues",
			apology(), "ERROR RUN_TIMEOUT",
		})
		checkAnswer(t, evs)
		if got := p.called(); got != 1 {
			t.Errorf("the model was called %d times, want once", got)
		}
		checkTurn(t, q, req, chat.StatusIncomplete, "")
		turn, _ := q.turn(req.SessionID, req.ID)
		checkMessages(t, "the conversation keeps the run", turn.Run, []chat.Message{
			assistant(call("c", "slow", "{}")), results(failed("c", "slow", stopped)),
		})
		checkSettled(t, d, 1, 0)
	})
}

// stopped is what the model is told of a call the run stopped before it had
// a result.
const stopped = "the run stopped before this tool call had a result"

// A user's cancel stops the tool that runs; the answer ends CANCELLED, and
// the next question's model call is given a history it accepts: the call
// the cancel cut short has a result that says so. So too for a run a worker
// took over.
func TestRunCancelStopsTheTool(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		steps   []step
		stored  []chat.Message // by the attempt before, if any
		want    []string
		text    string
		run     []chat.Message
		attempt uint64
	}{
		{
			name:    "on the first attempt",
			steps:   []step{callsTools(chat.Usage{}, toolCall("c", "slow", `{"n":1}`)), answers("Next.")},
			attempt: 1,
			want: []string{
				"START",
				"TOOL_CALL_START c slow", `TOOL_CALL_DELTA c {"n":1}`, `TOOL_CALL c slow {"n":1}`, "STEP 1 tool_use continues",
				"CANCELLED",
			},
			run: []chat.Message{assistant(call("c", "slow", `{"n":1}`)), results(failed("c", "slow", stopped))},
		},
		{
			name:    "on an attempt that took over",
			steps:   []step{answers("Next.")},
			stored:  []chat.Message{assistant(text("Let me see. "), call("c", "slow", `{"n":1}`))},
			attempt: 2,
			want: []string{
				"RESTART", "START",
				"DELTA Let me see. ", "TOOL_CALL_START c slow", `TOOL_CALL c slow {"n":1}`, "STEP 1 tool_use continues",
				"CANCELLED",
			},
			text: "Let me see. ",
			run:  []chat.Message{assistant(text("Let me see. "), call("c", "slow", `{"n":1}`)), results(failed("c", "slow", stopped))},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			started, halted := make(chan struct{}), make(chan error, 1)
			tb := toolbox(map[string]tool{"slow": blocks(started, halted)})
			p := script(tc.steps...)
			startWorker(t, q, agentConfig(tb), agentModels(p, nil, "slow"))
			req := newRequest("m")
			asked(t, q, req)
			if tc.stored != nil {
				diedAfter(t, q, req, tc.stored)
			}
			d := q.deliver(req, tc.attempt)
			await(t, "the tool to run", started)
			q.cancel(req.SessionID, req.ID)

			if err := await(t, "the tool's call to stop", halted); !errors.Is(err, errCancelled) {
				t.Errorf("the tool's call was stopped by %v, want the user's cancel", err)
			}
			evs := ended(t, q, d)
			checkShown(t, evs, tc.want)
			checkAnswer(t, evs)
			checkTurn(t, q, req, chat.StatusCancelled, tc.text)
			turn, _ := q.turn(req.SessionID, req.ID)
			checkMessages(t, "the conversation keeps the run", turn.Run, tc.run)
			checkSettled(t, d, 1, 0)
			checkNextQuestion(t, q, p, req, tc.run)
		})
	}
}

// checkNextQuestion asks another question in req's session and fails t
// unless its model call is given req's question, the run kept of req's
// answer, then the question, every tool call answered.
func checkNextQuestion(t *testing.T, q *fakeQueue, p *fakeProvider, req chat.Request, run []chat.Message) {
	t.Helper()
	next := newRequest("m")
	next.SessionID = req.SessionID
	asked(t, q, next)
	ended(t, q, q.deliver(next, 1))
	prompt := p.prompt(t, p.called()-1).Messages
	checkCallsAnswered(t, prompt)
	want := slices.Concat([]chat.Message{{Role: chat.RoleUser, Text: req.Message}}, run, []chat.Message{{Role: chat.RoleUser, Text: next.Message}})
	checkMessages(t, "the next question's model call was asked", prompt, want)
}

// A model call that fails once it has called a tool ends the run before
// the call runs; the turn answers the call all the same.
func TestRunModelFailsAfterCallingATool(t *testing.T) {
	t.Parallel()
	q := newFakeQueue()
	tb := toolbox(map[string]tool{"add": replies("3")})
	calls := emits(chat.Final{}, toolCall("c", "add")...)
	p := script(
		func(ctx context.Context, emit func(chat.Part) error) (chat.Final, error) {
			if _, err := calls(ctx, emit); err != nil {
				return chat.Final{}, err
			}
			return chat.Final{}, unavailable
		},
		answers("Next."),
	)
	startWorker(t, q, agentConfig(tb), agentModels(p, nil, "add"))
	req := newRequest("m")
	asked(t, q, req)
	d := q.deliver(req, 1)

	evs := ended(t, q, d)
	checkShown(t, evs, []string{"START", "TOOL_CALL_START c add", "TOOL_CALL c add {}", apology(), "ERROR PROVIDER_UNAVAILABLE"})
	checkAnswer(t, evs)
	if got := tb.called("add"); got != 0 {
		t.Errorf("the tool ran %d times", got)
	}
	checkTurn(t, q, req, chat.StatusIncomplete, "")
	turn, _ := q.turn(req.SessionID, req.ID)
	run := []chat.Message{assistant(call("c", "add", "{}")), results(failed("c", "add", stopped))}
	checkMessages(t, "the conversation keeps the run", turn.Run, run)
	checkNextQuestion(t, q, p, req, run)
}

// A step whose call must not run twice unasked is stored before its tool
// runs, so a worker that takes over knows the call may have started; a step
// of calls that may run twice is stored with its first result, one write
// fewer between two model calls.
func TestRunStoresAStepBeforeItsToolsOnlyWhenItMust(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		policies map[string]ToolPolicy
		before   bool
	}{
		{"idempotent", nil, false},
		{"not idempotent", map[string]ToolPolicy{"pay": {NonIdempotent: true}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			tb := toolbox(map[string]tool{"pay": replies("paid")})
			p := script(callsTools(chat.Usage{}, toolCall("c1", "pay", "{}")), answers("Done."))
			startWorker(t, q, agentConfig(tb), agentModels(p, tc.policies, "pay"))
			req := newRequest("m")
			asked(t, q, req)
			d := q.deliver(req, 1)
			ended(t, q, d)
			stored := progress(q, req)
			step := assistant(call("c1", "pay", "{}"))
			paid := results(result("c1", "pay", "paid"))
			want := [][]chat.Message{{step, paid}}
			if tc.before {
				want = [][]chat.Message{{step}, {step, paid}}
			}
			if len(stored) != len(want) {
				t.Fatalf("the run was stored %d times in progress, want %d", len(stored), len(want))
			}
			for i := range want {
				checkMessages(t, fmt.Sprintf("record %d in progress", i+1), stored[i], want[i])
			}
		})
	}
}

// A worker that takes over a run goes on from what the one before it
// stored: its events are shown again after RESTART, no call whose result
// was stored runs again, and a call that may have run already runs again
// only once a person says so.
func TestRunResumes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		policies map[string]ToolPolicy
		stored   []chat.Message
		approve  string // the call a person is asked about, and approves
		want     []string
		calls    map[string]int // of each tool
		prompt   []chat.Message // the run as given back to the model
	}{
		{
			name: "every result stored",
			stored: []chat.Message{
				assistant(text("Let me look. "), source("https://example.com/x"), call("c1", "a", `{"q":"x"}`)),
				results(result("c1", "a", "found")),
			},
			want: []string{
				"RESTART", "START",
				"DELTA Let me look. ", "SOURCE https://example.com/x", "TOOL_CALL_START c1 a", `TOOL_CALL c1 a {"q":"x"}`, "STEP 1 tool_use continues",
				"TOOL_RESULT c1 a: found",
				"DELTA Done.", "STEP 2 end_turn", "END",
			},
			calls: map[string]int{"a": 0},
			prompt: []chat.Message{
				assistant(text("Let me look. "), source("https://example.com/x"), call("c1", "a", `{"q":"x"}`)),
				results(result("c1", "a", "found")),
			},
		},
		{
			name:     "one of two results stored",
			policies: map[string]ToolPolicy{"a": {NonIdempotent: true}},
			stored: []chat.Message{
				assistant(call("c1", "a", "{}"), call("c2", "b", "{}")),
				results(result("c1", "a", "from before")),
			},
			want: []string{
				"RESTART", "START",
				"TOOL_CALL_START c1 a", "TOOL_CALL c1 a {}", "TOOL_CALL_START c2 b", "TOOL_CALL c2 b {}", "STEP 1 tool_use continues",
				"TOOL_RESULT c1 a: from before",
				"TOOL_RESULT c2 b: b now",
				"DELTA Done.", "STEP 2 end_turn", "END",
			},
			calls: map[string]int{"a": 0, "b": 1},
			prompt: []chat.Message{
				assistant(call("c1", "a", "{}"), call("c2", "b", "{}")),
				results(result("c1", "a", "from before"), result("c2", "b", "b now")),
			},
		},
		{
			name:     "a call that may have run",
			policies: map[string]ToolPolicy{"pay": {NonIdempotent: true}},
			stored:   []chat.Message{assistant(call("c1", "pay", `{"eur":5}`))},
			approve:  "c1",
			want: []string{
				"RESTART", "START",
				"TOOL_CALL_START c1 pay", `TOOL_CALL c1 pay {"eur":5}`, "STEP 1 tool_use continues",
				"APPROVAL_REQUESTED c1 pay", "APPROVAL c1 approved",
				"TOOL_RESULT c1 pay: paid",
				"DELTA Done.", "STEP 2 end_turn", "END",
			},
			calls: map[string]int{"pay": 1},
			prompt: []chat.Message{
				assistant(call("c1", "pay", `{"eur":5}`)),
				results(result("c1", "pay", "paid")),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			tb := toolbox(map[string]tool{"a": replies("again"), "b": replies("b now"), "pay": replies("paid")})
			p := script(answers("Done."))
			startWorker(t, q, agentConfig(tb), agentModels(p, tc.policies, "a", "b", "pay"))
			req := newRequest("m")
			asked(t, q, req)
			diedAfter(t, q, req, tc.stored)
			d := q.deliver(req, 2)
			if tc.approve != "" {
				q.waitFor(t, "a request for approval", func() bool {
					return hasEvent(q.storedLocked(req.ID), chat.EventApprovalRequested)
				})
				for _, ev := range q.stored(req.ID) {
					if ev.Type == chat.EventApprovalRequested && (ev.Approval == nil || !strings.Contains(ev.Approval.Reason, "may have run already")) {
						t.Errorf("the approval is asked for with %+v, want why", ev.Approval)
					}
				}
				if got := tb.called("pay"); got != 0 {
					t.Errorf("the call ran %d times before it was approved", got)
				}
				q.answer(req.SessionID, req.ID, tc.approve, true, "")
			}

			evs := ended(t, q, d)
			checkShown(t, evs, tc.want)
			checkAnswer(t, evs)
			for name, n := range tc.calls {
				if got := tb.called(name); got != n {
					t.Errorf("tool %s ran %d times, want %d", name, got, n)
				}
			}
			if got := p.called(); got != 1 {
				t.Fatalf("the model was called %d times, want once", got)
			}
			question := chat.Message{Role: chat.RoleUser, Text: req.Message}
			checkMessages(t, "the model was asked", p.prompt(t, 0).Messages, append([]chat.Message{question}, tc.prompt...))
			stored := progress(q, req)
			checkMessages(t, "the run as last stored in progress", stored[len(stored)-1], tc.prompt)
			turn, _ := q.turn(req.SessionID, req.ID)
			checkMessages(t, "the conversation keeps the run", turn.Run, append(slices.Clone(tc.prompt), assistant(text("Done."))))
			if turn.Status != chat.StatusComplete || turn.Attempt != 2 {
				t.Errorf("the conversation keeps a %s turn of attempt %d", turn.Status, turn.Attempt)
			}
			checkSettled(t, d, 1, 0)
		})
	}
}

// A tool that needs a person's approval runs only once given it; a denial,
// or no answer in time, is what the model is told instead.
func TestRunApprovals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		timeout  time.Duration // to approve; 0 for the default
		approved bool
		reason   string
		answer   bool // a person answers
		approval string
		result   chat.Block
		calls    int
	}{
		{
			name: "approved", answer: true, approved: true,
			approval: "APPROVAL c1 approved",
			result:   result("c1", "deploy", "deployed"),
			calls:    1,
		},
		{
			name: "denied", answer: true, reason: "not on a Friday",
			approval: "APPROVAL c1 denied: not on a Friday",
			result:   failed("c1", "deploy", "the user denied this tool call: not on a Friday"),
		},
		{
			name: "unanswered", timeout: time.Millisecond,
			approval: "APPROVAL c1 denied: nobody answered in time",
			result:   failed("c1", "deploy", "the user denied this tool call: nobody answered in time"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			tb := toolbox(map[string]tool{"deploy": replies("deployed")})
			p := script(callsTools(chat.Usage{}, toolCall("c1", "deploy", `{"env":"prod"}`)), answers("Done."))
			cfg := agentConfig(tb)
			cfg.Agent.ApprovalTimeout = tc.timeout
			startWorker(t, q, cfg, agentModels(p, map[string]ToolPolicy{"deploy": {Approval: true}}, "deploy"))
			req := newRequest("m")
			asked(t, q, req)
			d := q.deliver(req, 1)
			q.waitFor(t, "a request for approval", func() bool {
				return hasEvent(q.storedLocked(req.ID), chat.EventApprovalRequested)
			})
			for _, ev := range q.stored(req.ID) {
				if ev.Type != chat.EventApprovalRequested {
					continue
				}
				if a := ev.Approval; a == nil || a.CallID != "c1" || a.Tool != "deploy" || string(a.Input) != `{"env":"prod"}` || a.Expires == "" {
					t.Errorf("the approval is asked for with %+v", a)
				}
			}
			if got := tb.called("deploy"); got != 0 {
				t.Errorf("the tool ran %d times before it was approved", got)
			}
			if tc.answer {
				q.answer(req.SessionID, req.ID, "c1", tc.approved, tc.reason)
			}

			evs := ended(t, q, d)
			shownResult := "TOOL_RESULT c1 deploy: " + tc.result.Text
			if tc.result.IsError {
				shownResult += " (error)"
			}
			checkShown(t, evs, []string{
				"START",
				"TOOL_CALL_START c1 deploy", `TOOL_CALL_DELTA c1 {"env":"prod"}`, `TOOL_CALL c1 deploy {"env":"prod"}`, "STEP 1 tool_use continues",
				"APPROVAL_REQUESTED c1 deploy", tc.approval, shownResult,
				"DELTA Done.", "STEP 2 end_turn", "END",
			})
			checkAnswer(t, evs)
			if got := tb.called("deploy"); got != tc.calls {
				t.Errorf("the tool ran %d times, want %d", got, tc.calls)
			}
			prompt := p.prompt(t, 1).Messages
			checkMessages(t, "the model was given back", prompt[len(prompt)-1:], []chat.Message{results(tc.result)})
			checkTurn(t, q, req, chat.StatusComplete, "Done.")
		})
	}
}

// An answer without tool calls is a run of one step, shown as it always
// was: no STEP. Reasoning is kept for the next model call all the same.
func TestRunPlainAnswerHasNoSteps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		parts []chat.Part
		want  []string
		run   []chat.Message
	}{
		{
			name:  "text",
			parts: []chat.Part{chat.TextPart("Hel"), chat.TextPart("lo")},
			want:  []string{"START", "DELTA Hel", "DELTA lo", "END"},
		},
		{
			name: "reasoning, then text",
			parts: []chat.Part{
				{Kind: chat.PartReasoning, Text: "Greet."},
				{Kind: chat.PartSignature, Text: "sig"},
				chat.TextPart("Hello"),
			},
			want: []string{"START", "REASONING Greet.", "DELTA Hello", "END"},
			run:  []chat.Message{assistant(chat.Block{Kind: chat.BlockReasoning, Text: "Greet.", Signature: "sig"}, text("Hello"))},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newFakeQueue()
			tb := toolbox(map[string]tool{"add": replies("3")})
			p := script(emits(chat.Final{Usage: chat.Usage{OutputTokens: 2}, StopReason: "end_turn"}, tc.parts...))
			startWorker(t, q, agentConfig(tb), agentModels(p, nil, "add"))
			req := newRequest("m")
			asked(t, q, req)
			d := q.deliver(req, 1)

			evs := ended(t, q, d)
			checkShown(t, evs, tc.want)
			checkAnswer(t, evs)
			checkTurn(t, q, req, chat.StatusComplete, "Hello")
			turn, _ := q.turn(req.SessionID, req.ID)
			checkMessages(t, "the conversation keeps the run", turn.Run, tc.run)
			if got := progress(q, req); len(got) != 0 {
				t.Errorf("a run of one step was stored in progress %d times", len(got))
			}
		})
	}
}
