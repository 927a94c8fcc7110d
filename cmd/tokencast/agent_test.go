package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/demo"
	"github.com/tokencast/tokencast/internal/tools/toolstest"
)

const agentSubscription = `subscription($sessionId: String!, $after: String) {
  onSendMessage(sessionId: $sessionId, after: $after, agent: true) {
    type message requestId index cursor
    toolCall { id name input }
    toolResult { callId name output isError truncated durationMs }
    step { number reason continues }
    approval { callId tool input approved reason }
    usage { inputTokens outputTokens totalTokens reasoningTokens }
  }
}`

const agentConversationQuery = `query($s: String!) { conversation(sessionId: $s) { turns { requestId role text status
  steps { reasoning text toolCalls { id name input output isError } } } } }`

// agentEvent is onSendMessage as agentSubscription selects it.
type agentEvent struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Index     int    `json:"index"`
	Cursor    string `json:"cursor"`
	ToolCall  *struct {
		ID    string  `json:"id"`
		Name  *string `json:"name"`
		Input *string `json:"input"`
	} `json:"toolCall"`
	ToolResult *struct {
		CallID  string `json:"callId"`
		Name    string `json:"name"`
		Output  string `json:"output"`
		IsError bool   `json:"isError"`
	} `json:"toolResult"`
	Step *struct {
		Number    int    `json:"number"`
		Reason    string `json:"reason"`
		Continues bool   `json:"continues"`
	} `json:"step"`
	Approval *struct {
		CallID   string `json:"callId"`
		Tool     string `json:"tool"`
		Approved bool   `json:"approved"`
		Reason   string `json:"reason"`
	} `json:"approval"`
	Usage *struct {
		InputTokens     int  `json:"inputTokens"`
		OutputTokens    int  `json:"outputTokens"`
		ReasoningTokens *int `json:"reasoningTokens"`
	} `json:"usage"`
}

// agentSubscribed subscribes with agent: true (after a cursor, when given)
// and proves the subscription attached with a ping round trip.
func agentSubscribed(t *testing.T, s *server, session, key, after string) *wsClient {
	t.Helper()
	c := dialWS(t, s)
	var init map[string]any
	if key != "" {
		init = map[string]any{"x-api-key": key}
	}
	c.init(init)
	vars := map[string]any{"sessionId": session}
	if after != "" {
		vars["after"] = after
	}
	c.send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": agentSubscription, "variables": vars}})
	c.send(map[string]any{"type": "ping"})
	for {
		m := c.must(10 * time.Second)
		if m.Type == "pong" {
			return c
		}
		if m.Type != "next" {
			t.Fatalf("got %s %s, want pong", m.Type, m.Payload)
		}
		c.replayed = append(c.replayed, m)
	}
}

// agentEvents reads the events of request until its end (or, with until,
// until an event until accepts), starting with what the subscription was
// replayed.
func (c *wsClient) agentEvents(request string, until func(agentEvent) bool) []agentEvent {
	c.t.Helper()
	var out []agentEvent
	take := func(m wsMsg) bool {
		if m.Type != "next" {
			c.t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		var p struct {
			Data struct {
				OnSendMessage agentEvent `json:"onSendMessage"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			c.t.Fatal(err)
		}
		ev := p.Data.OnSendMessage
		if ev.RequestID != request {
			return false
		}
		out = append(out, ev)
		if until != nil {
			return until(ev)
		}
		return chat.EventType(ev.Type).Terminal()
	}
	for len(c.replayed) > 0 {
		m := c.replayed[0]
		c.replayed = c.replayed[1:]
		if take(m) {
			return out
		}
	}
	for {
		m, err := c.read(30 * time.Second)
		if err != nil {
			c.t.Fatalf("read after %d events (%s): %v", len(out), agentTypes(out), err)
		}
		if m.Type == "pong" || m.Type == "ping" {
			continue
		}
		if take(m) {
			return out
		}
	}
}

func agentTypes(evs []agentEvent) string {
	var ts []string
	for _, ev := range evs {
		ts = append(ts, ev.Type)
	}
	return strings.Join(ts, " ")
}

// since is what follows the last RESTART of evs: the answer as a client
// shows it.
func since(evs []agentEvent) []agentEvent {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == string(chat.EventRestart) {
			return evs[i+1:]
		}
	}
	return evs
}

// checkDemoRun checks a whole demo agent run as a client shows it: the
// reasoning, both calls with their complete input, a step that continues,
// both results (the calculator's 42), the answer, a last step, END; every
// index once, in order.
func checkDemoRun(t *testing.T, evs []agentEvent) (text string) {
	t.Helper()
	var reasoning strings.Builder
	results := map[string]string{}
	inputs := map[string]string{}
	var steps []string
	for i, ev := range evs {
		if ev.Index != i {
			t.Fatalf("event %d (%s) has index %d: %s", i, ev.Type, ev.Index, agentTypes(evs))
		}
		switch ev.Type {
		case "REASONING":
			if len(results) > 0 || text != "" {
				t.Fatalf("reasoning after the tools ran: %s", agentTypes(evs))
			}
			reasoning.WriteString(ev.Message)
		case "TOOL_CALL":
			if ev.ToolCall == nil || ev.ToolCall.Name == nil || ev.ToolCall.Input == nil {
				t.Fatalf("TOOL_CALL without its call: %+v", ev)
			}
			inputs[*ev.ToolCall.Name] = *ev.ToolCall.Input
		case "TOOL_RESULT":
			results[ev.ToolResult.Name] = ev.ToolResult.Output
		case "DELTA":
			text += ev.Message
		case "STEP":
			steps = append(steps, fmt.Sprintf("%d:%v", ev.Step.Number, ev.Step.Continues))
		}
	}
	if evs[0].Type != "START" || evs[len(evs)-1].Type != "END" {
		t.Fatalf("the run is %s, want START … END", agentTypes(evs))
	}
	if reasoning.String() != demo.AgentReasoning {
		t.Fatalf("reasoning %q, want %q", reasoning.String(), demo.AgentReasoning)
	}
	if inputs["calculator"] != `{"expression":"6*7"}` || inputs["clock"] != "{}" {
		t.Fatalf("tool inputs %v", inputs)
	}
	if results["calculator"] != "42" || results["clock"] == "" {
		t.Fatalf("tool results %v", results)
	}
	if !slices.Equal(steps, []string{"1:true", "2:false"}) {
		t.Fatalf("steps %v, want 1:true 2:false", steps)
	}
	if want := "The calculator says 6*7 = 42. The clock says " + results["clock"] + "."; !strings.HasPrefix(text, want) {
		t.Fatalf("answer %q, want it to begin %q", text, want)
	}
	return text
}

// The embedded default runs the demo agent with the built-in tools: a typed
// subscriber sees the whole run, a subscriber of the AWS sample's contract
// sees exactly the text between its markers, and the conversation keeps the
// steps (never the reasoning's signature) for a reload and the next
// question.
func TestDemoAgentRunStreamsTypedEvents(t *testing.T) {
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA}
	s := start(t, "", env, fast...)
	typed := agentSubscribed(t, s, "agent-1", keyA, "")
	plain := subscribed(t, s, "agent-1", map[string]any{"x-api-key": keyA})
	req := s.ask(t, keyA, "agent-1", demo.AgentTrigger+" show me", "en")

	text := checkDemoRun(t, typed.agentEvents(req, nil))
	evs := plain.answer("1", req)
	var shown strings.Builder
	for _, ev := range evs {
		if chat.EventType(ev.Type).Agent() {
			t.Fatalf("a subscriber without agent: true was sent %s", ev.Type)
		}
		if ev.Type == "DELTA" {
			shown.WriteString(ev.Message)
		}
	}
	if evs[0].Message != chat.MarkerStart || evs[len(evs)-1].Message != chat.MarkerEnd || shown.String() != text {
		t.Fatalf("the sample's client saw %+v, want %q between the markers", evs, text)
	}

	_, resp := s.post(t, keyA, agentConversationQuery, map[string]any{"s": "agent-1"})
	if len(resp.Errors) > 0 || strings.Contains(string(resp.Data), demo.AgentSignature) {
		t.Fatalf("conversation: %s %+v (the signature must never be shown)", resp.Data, resp.Errors)
	}
	var conv struct {
		Conversation struct {
			Turns []struct {
				Role, Text, Status string
				Steps              []struct {
					Reasoning, Text string
					ToolCalls       []struct{ ID, Name, Input, Output string }
				}
			}
		}
	}
	if err := json.Unmarshal(resp.Data, &conv); err != nil {
		t.Fatal(err)
	}
	answer := conv.Conversation.Turns[1]
	if answer.Status != "COMPLETE" || answer.Text != text || len(answer.Steps) != 2 ||
		answer.Steps[0].Reasoning != demo.AgentReasoning || len(answer.Steps[0].ToolCalls) != 2 ||
		answer.Steps[0].ToolCalls[0].Output != "42" || answer.Steps[1].Text != text {
		t.Fatalf("the stored run: %+v", answer)
	}

	// The next question's prompt carries the run; the demo model counts
	// the questions only.
	req2 := s.ask(t, keyA, "agent-1", "and now?", "en")
	checkAnswer(t, plain.answer("1", req2), req2, demoAnswer("en", demo.AgentTrigger+" show me", "and now?"))
}

// agentConfig writes a --config file.
func agentConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokencast.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// approve answers an approval as key's principal and returns the error
// code, "" when accepted.
func approve(t *testing.T, s *server, key, session, request, call string, yes bool) string {
	t.Helper()
	_, resp := s.post(t, key, `mutation($s: String!, $r: ID!, $c: ID!, $a: Boolean!) { answerApproval(sessionId: $s, requestId: $r, callId: $c, approve: $a, reason: "checked") { callId approved } }`,
		map[string]any{"s": session, "r": request, "c": call, "a": yes})
	if len(resp.Errors) > 0 {
		code, _ := resp.Errors[0].Extensions["code"].(string)
		return code
	}
	if !strings.Contains(string(resp.Data), `"approved":`+fmt.Sprint(yes)) {
		t.Fatalf("answerApproval: %s", resp.Data)
	}
	return ""
}

// An approval outlives every process: the run waits for it, the server
// stops and starts again, and the owner's answer from a new connection
// continues the run. Nobody else may answer it, and only once.
func TestApprovalSurvivesARestartAndIsTheOwnersOnce(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA + ",bob:" + keyB}
	args := append([]string{"--config", agentConfig(t, "tools:\n  builtin.calculator: { approval: required }\n"), "--shutdown-timeout", "1s"}, fast...)
	s := start(t, dir, env, args...)
	alice := agentSubscribed(t, s, "agent-2", keyA, "")
	req := s.ask(t, keyA, "agent-2", demo.AgentTrigger+" with approval", "en")
	alice.agentEvents(req, func(ev agentEvent) bool {
		return ev.Type == "APPROVAL_REQUESTED" && ev.Approval.CallID == demo.AgentCalcCall && ev.Approval.Tool == "calculator"
	})
	if code := approve(t, s, keyA, "agent-2", req, "no-such-call", true); code != chat.CodeApprovalNotPending {
		t.Fatalf("an approval that is not awaited: %q", code)
	}
	alice.conn.CloseNow()
	s.stop()

	s2 := start(t, dir, env, args...)
	if code := approve(t, s2, keyB, "agent-2", req, demo.AgentCalcCall, true); code != chat.CodeForbidden {
		t.Fatalf("bob approving alice's tool call: %q, want FORBIDDEN", code)
	}
	// A subscriber that joins now is replayed the run in flight, the
	// request for approval included.
	again := agentSubscribed(t, s2, "agent-2", keyA, "")
	again.agentEvents(req, func(ev agentEvent) bool { return ev.Type == "APPROVAL_REQUESTED" })
	if code := approve(t, s2, keyA, "agent-2", req, demo.AgentCalcCall, true); code != "" {
		t.Fatalf("alice approving: %q", code)
	}
	if code := approve(t, s2, keyA, "agent-2", req, demo.AgentCalcCall, false); code != chat.CodeAlreadyAnswered {
		t.Fatalf("a second answer: %q, want ALREADY_ANSWERED", code)
	}
	rest := again.agentEvents(req, nil)
	var approved bool
	var text string
	for _, ev := range rest {
		switch ev.Type {
		case "APPROVAL":
			approved = ev.Approval.Approved && ev.Approval.Reason == "checked"
		case "DELTA":
			text += ev.Message
		}
	}
	if !approved || rest[len(rest)-1].Type != "END" || !strings.Contains(text, "6*7 = 42") {
		t.Fatalf("after the approval: %s, text %q", agentTypes(rest), text)
	}
}

// hangingClock is a config whose demo model may call an MCP server's
// calculator, which answers 42, and clock, which hangs until release is
// closed: a worker can be killed while a step's call is in flight. calls
// counts each tool's calls.
func hangingClock(t *testing.T) (cfg string, calls func(string) int, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	url, calls := toolstest.Server(t,
		toolstest.Tool{Name: "calculator", Handler: func(context.Context, map[string]any) (string, error) { return "42", nil }},
		toolstest.Tool{Name: "clock", Handler: func(ctx context.Context, _ map[string]any) (string, error) {
			select {
			case <-release:
				return "noon", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}},
	)
	cfg = agentConfig(t, "mcp_servers:\n  ext:\n    url: "+url+"\nmodels:\n  demo:default:\n    ref: demo:default\n    tools: [ext.*]\n")
	return cfg, calls, release
}

// A worker that dies mid-run is replaced, and the run goes on from its
// last stored step: a tool call whose result was stored is not run again
// (the calculator counts one call), the one in flight is (the clock, which
// is idempotent, counts two); a subscriber that resumed by cursor holds the
// same run as one that never left, event for event.
func TestAgentRunResumesOnAnotherWorkerWithoutRunningAToolTwice(t *testing.T) {
	cfg, calls, release := hangingClock(t)
	s, natsAddr := apiWithListeningNATS(t, "--config", cfg)
	w1 := spawn(t, workerArgs(natsAddr, "--config", cfg)...)
	steady := agentSubscribed(t, s, "agent-3", "", "")
	leaver := agentSubscribed(t, s, "agent-3", "", "")
	req := s.ask(t, "", "agent-3", demo.AgentTrigger+" survive", "en")

	// The leaver goes away after the first tool call; the steady one
	// watches the calculator's result come in (stored before it is shown)
	// while the clock hangs.
	before := leaver.agentEvents(req, func(ev agentEvent) bool { return ev.Type == "TOOL_CALL" })
	leaver.conn.CloseNow()
	seen := steady.agentEvents(req, func(ev agentEvent) bool {
		return ev.Type == "TOOL_RESULT" && ev.ToolResult.Name == "calculator"
	})
	for deadline := time.Now().Add(30 * time.Second); calls("clock") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the clock was called %d times; worker:\n%s", calls("clock"), w1.out.String())
		}
	}
	w1.kill()
	spawn(t, workerArgs(natsAddr, "--config", cfg)...)
	close(release)

	all := append(seen, steady.agentEvents(req, nil)...)
	if !strings.Contains(agentTypes(all), "RESTART") {
		t.Fatalf("no RESTART after the worker died: %s", agentTypes(all))
	}
	run := since(all)
	if text := checkDemoRun(t, run); !strings.Contains(text, "The clock says noon.") {
		t.Fatalf("answer %q", text)
	}
	if c, k := calls("calculator"), calls("clock"); c != 1 || k != 2 {
		t.Fatalf("calls: calculator %d, clock %d; want 1 (its result was stored) and 2 (it was in flight)", c, k)
	}
	back := agentSubscribed(t, s, "agent-3", "", before[len(before)-1].Cursor)
	resumed := append(before, back.agentEvents(req, nil)...)
	a, _ := json.Marshal(since(resumed))
	b, _ := json.Marshal(run)
	if string(a) != string(b) {
		t.Fatalf("the resumed subscriber holds\n%s\nthe steady one\n%s", agentTypes(since(resumed)), agentTypes(run))
	}
	// Each model call is counted once, by the worker that made it: the
	// first worker's step and the second's, which END sums.
	end := run[len(run)-1]
	r := s.usageOf(t, "", "", 2, "model")
	if r.Total.Calls != 2 || end.Usage == nil || r.Total.InputTokens != end.Usage.InputTokens || r.Total.OutputTokens != end.Usage.OutputTokens ||
		r.Total.ReasoningTokens != *end.Usage.ReasoningTokens || r.Total.EstimatedCalls != 0 {
		t.Fatalf("usage %+v, END %+v: want the run's two model calls once each", r.Total, end.Usage)
	}
}
