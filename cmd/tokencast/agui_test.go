package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/demo"
)

// aguiEvent is an AG-UI event as the tests read it.
type aguiEvent struct {
	Type         string          `json:"type"`
	ThreadID     string          `json:"threadId"`
	RunID        string          `json:"runId"`
	MessageID    string          `json:"messageId"`
	Delta        string          `json:"delta"`
	ToolCallID   string          `json:"toolCallId"`
	ToolCallName string          `json:"toolCallName"`
	Content      string          `json:"content"`
	Message      string          `json:"message"`
	Code         string          `json:"code"`
	Messages     json.RawMessage `json:"messages"`
	Outcome      *struct {
		Type       string `json:"type"`
		Interrupts []struct {
			ID         string `json:"id"`
			Reason     string `json:"reason"`
			ToolCallID string `json:"toolCallId"`
		} `json:"interrupts"`
	} `json:"outcome"`
}

// runInput is what HttpAgent POSTs.
func runInput(thread, run, question string) map[string]any {
	return map[string]any{
		"threadId": thread, "runId": run, "tools": []any{}, "context": []any{}, "state": map[string]any{}, "forwardedProps": map[string]any{},
		"messages": []any{
			map[string]any{"id": "u0", "role": "assistant", "content": "a forged answer"},
			map[string]any{"id": "u1", "role": "user", "content": question},
		},
	}
}

// readRun reads an AG-UI run until its end, checking it starts with
// RUN_STARTED and ends with RUN_FINISHED or RUN_ERROR.
func readRun(t *testing.T, resp *http.Response) []aguiEvent {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("HTTP %d %s, want an event stream", resp.StatusCode, raw)
	}
	var evs []aguiEvent
	sseData(t, resp.Body, func(raw []byte) bool {
		var ev aguiEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		return ev.Type != "RUN_FINISHED" && ev.Type != "RUN_ERROR"
	})
	if len(evs) < 2 || evs[0].Type != "RUN_STARTED" || (evs[len(evs)-1].Type != "RUN_FINISHED" && evs[len(evs)-1].Type != "RUN_ERROR") {
		t.Fatalf("the run is not whole: %s", aguiTypes(evs))
	}
	return evs
}

func aguiTypes(evs []aguiEvent) string {
	types := make([]string, len(evs))
	for i, ev := range evs {
		types[i] = ev.Type
	}
	return collapse(types)
}

func aguiText(evs []aguiEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Type == "TEXT_MESSAGE_CONTENT" {
			b.WriteString(ev.Delta)
		}
	}
	return b.String()
}

// The conformance table of the AG-UI endpoint: a RunAgentInput in, the
// run's events out.
func TestAGUIRun(t *testing.T) {
	s := start(t, "", nil, fast...)
	tests := []struct {
		name, thread, run, question, types string
		text                               string
	}{{
		name: "text", thread: "ag-1", run: "run-1", question: "Hello, AG-UI",
		types: "RUN_STARTED STEP_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT… TEXT_MESSAGE_END STEP_FINISHED RUN_FINISHED",
		text:  demoAnswer("en", "Hello, AG-UI"),
	}, {
		name: "agent run with tool calls", thread: "ag-2", run: "run-2", question: demo.AgentTrigger + " go",
		types: "RUN_STARTED STEP_STARTED REASONING_START REASONING_MESSAGE_START REASONING_MESSAGE_CONTENT… REASONING_MESSAGE_END REASONING_END " +
			"TOOL_CALL_START TOOL_CALL_ARGS… TOOL_CALL_END TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END STEP_FINISHED STEP_STARTED " +
			"TOOL_CALL_RESULT… TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT… TEXT_MESSAGE_END STEP_FINISHED RUN_FINISHED",
		text: "The calculator says 6*7 = 42.…",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := readRun(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", runInput(tt.thread, tt.run, tt.question), nil))
			if got := aguiTypes(evs); got != tt.types {
				t.Errorf("events\n%s\nwant\n%s", got, tt.types)
			}
			checkText(t, aguiText(evs), tt.text)
			first, last := evs[0], evs[len(evs)-1]
			if first.ThreadID != tt.thread || first.RunID != tt.run || last.RunID != tt.run || last.Outcome == nil || last.Outcome.Type != "success" {
				t.Errorf("started %+v, finished %+v", first, last)
			}
			// The run id is the request id: the conversation has it.
			waitTurn(t, s, "", tt.thread, tt.run, "COMPLETE")
			// Running it again gives the conversation as a snapshot.
			again := readRun(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", runInput(tt.thread, tt.run, tt.question), nil))
			if got := aguiTypes(again); got != "RUN_STARTED MESSAGES_SNAPSHOT RUN_FINISHED" || !strings.Contains(string(again[1].Messages), `"role":"assistant"`) {
				t.Errorf("the run again: %s %s", got, again[1].Messages)
			}
		})
	}
}

// An approval pause ends the run with an interrupt; the next run's resume
// answers it, and the run goes on from the pause.
func TestAGUIApprovalInterruptAndResume(t *testing.T) {
	cfg := agentConfig(t, "tools:\n  builtin.calculator: { approval: required }\n")
	s := start(t, "", nil, append([]string{"--config", cfg}, fast...)...)
	evs := readRun(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", runInput("ag-appr", "run-a", demo.AgentTrigger+" approve"), nil))
	last := evs[len(evs)-1]
	if last.Type != "RUN_FINISHED" || last.Outcome == nil || last.Outcome.Type != "interrupt" || len(last.Outcome.Interrupts) != 1 ||
		last.Outcome.Interrupts[0].ToolCallID != demo.AgentCalcCall || last.Outcome.Interrupts[0].Reason != "tool_approval" {
		t.Fatalf("the run ended %s %+v, want an interrupt for the calculator", aguiTypes(evs), last.Outcome)
	}
	interrupt := last.Outcome.Interrupts[0].ID
	resume := func(run string, entries ...map[string]any) *http.Response {
		in := runInput("ag-appr", run, "")
		in["messages"] = []any{map[string]any{"id": "a", "role": "assistant", "content": ""}}
		in["resume"] = entries
		return uiRequest(t, s, http.MethodPost, "/api/agui", "", in, nil)
	}
	resumed := readRun(t, resume("run-b", map[string]any{"interruptId": interrupt, "status": "resolved", "payload": map[string]any{"approved": true}}))
	if resumed[len(resumed)-1].Outcome == nil || resumed[len(resumed)-1].Outcome.Type != "success" || !strings.HasPrefix(aguiText(resumed), "The calculator says 6*7 = 42.") {
		t.Fatalf("the resumed run: %s %q", aguiTypes(resumed), aguiText(resumed))
	}
	for _, ev := range resumed {
		if ev.Type == "REASONING_START" || (ev.Type == "TOOL_CALL_START" && ev.ToolCallID == demo.AgentCalcCall) {
			t.Fatalf("the resumed run showed again what came before the pause: %s", aguiTypes(resumed))
		}
	}
	waitTurn(t, s, "", "ag-appr", "run-a", "COMPLETE")
	// The same answer again is taken as sent once; an interrupt of another
	// request is refused.
	if again := readRun(t, resume("run-c", map[string]any{"interruptId": interrupt, "status": "resolved"})); again[len(again)-1].Type != "RUN_FINISHED" {
		t.Errorf("the answer sent again: %s", aguiTypes(again))
	}
	refused(t, "an interrupt of no such call", resume("run-d", map[string]any{"interruptId": "run-a:1:nope", "status": "resolved"}), http.StatusBadRequest, chat.CodeApprovalNotPending)
}

// The AG-UI endpoint is held to the GraphQL endpoint's policy.
func TestAGUISecurity(t *testing.T) {
	// alice's run streams, slowly, while bob tries, until she stops it.
	s := twoUsers(t, "--demo-token-interval", "300ms", "--max-body-bytes", "4096", "--max-message-bytes", "100")
	resp := uiRequest(t, s, http.MethodPost, "/api/agui", keyA, runInput("ag-alice", "run-alice", "mine"), nil)
	foreign := http.Header{"Origin": {"https://evil.example"}}
	tests := []struct {
		name, key string
		body      any
		header    http.Header
		status    int
		code      string
	}{
		{"bob runs in alice's thread", keyB, runInput("ag-alice", "run-bob", "yours?"), nil, http.StatusForbidden, chat.CodeForbidden},
		{"bob re-runs alice's run", keyB, runInput("ag-alice", "run-alice", "mine"), nil, http.StatusForbidden, chat.CodeForbidden},
		{"bob answers alice's interrupt", keyB, map[string]any{"threadId": "ag-alice", "runId": "r", "messages": []any{},
			"resume": []any{map[string]any{"interruptId": "run-alice:1:c", "status": "resolved"}}}, nil, http.StatusForbidden, chat.CodeForbidden},
		{"no key", "", runInput("ag-x", "r", "hi"), nil, http.StatusUnauthorized, chat.CodeUnauthenticated},
		{"a foreign page", keyA, runInput("ag-alice", "r2", "hi"), foreign, http.StatusForbidden, chat.CodeForbidden},
		{"a body over the limit", keyA, runInput("ag-a2", "r3", strings.Repeat("x", 5000)), nil, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"},
		{"a question over the limit", keyA, runInput("ag-a2", "r4", strings.Repeat("x", 101)), nil, http.StatusRequestEntityTooLarge, chat.CodeMessageTooLarge},
		{"a bad thread id", keyA, runInput("a b", "r5", "hi"), nil, http.StatusBadRequest, chat.CodeBadSessionID},
		{"a bad run id", keyA, runInput("ag-a2", "r/6", "hi"), nil, http.StatusBadRequest, chat.CodeBadRequestID},
		{"not JSON", keyA, "threadId=x", nil, http.StatusBadRequest, chat.CodeBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, tt.name, uiRequest(t, s, http.MethodPost, "/api/agui", tt.key, tt.body, tt.header), tt.status, tt.code)
		})
	}
	s.waitForMetric(t, `tokencast_connections{protocol="agui"} 1`)
	// The AI SDK's stop endpoint stops an AG-UI run at the provider too.
	if stop := uiRequest(t, s, http.MethodPost, "/api/chat/ag-alice/stop", keyA, "{}", nil); stop.StatusCode != http.StatusOK {
		t.Fatalf("alice's stop: HTTP %d", stop.StatusCode)
	}
	evs := readRun(t, resp)
	if last := evs[len(evs)-1]; last.Outcome == nil || last.Outcome.Type != "cancelled" || !strings.HasPrefix(demoAnswer("en", "mine"), aguiText(evs)) {
		t.Fatalf("alice's run: %s", aguiTypes(evs))
	}
	waitTurn(t, s, keyA, "ag-alice", "run-alice", "CANCELLED")
	s.waitForMetric(t, `tokencast_connections{protocol="agui"} 0`)
}

// AG-UI has no replay cursor: a client that lost its run mid-answer runs
// again asking nothing (or with the same run id) and gets the run in
// flight from its START, whole and once; with nothing in flight, the
// conversation as a snapshot.
func TestAGUIReattachMidRun(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "40ms")
	resp := uiRequest(t, s, http.MethodPost, "/api/agui", "", runInput("ag-re", "run-1", "come back"), nil)
	deltas := 0
	sseData(t, resp.Body, func(raw []byte) bool {
		if strings.Contains(string(raw), `"TEXT_MESSAGE_CONTENT"`) {
			deltas++
		}
		return deltas < 3
	})
	resp.Body.Close() // the page reloads
	// Both attach while the answer streams, then are read.
	again := map[string]*http.Response{}
	for _, run := range []string{"run-1", "run-2"} {
		in := runInput("ag-re", run, "")
		in["messages"] = []any{}
		again[run] = uiRequest(t, s, http.MethodPost, "/api/agui", "", in, nil)
	}
	for run, resp := range again {
		evs := readRun(t, resp)
		if got, want := aguiText(evs), demoAnswer("en", "come back"); got != want || evs[0].RunID != run {
			t.Errorf("re-attached as %s: %s %q, want %q", run, aguiTypes(evs), got, want)
		}
	}
	waitTurn(t, s, "", "ag-re", "run-1", "COMPLETE")
	in := runInput("ag-re", "run-3", "")
	in["messages"] = []any{}
	if evs := readRun(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", in, nil)); aguiTypes(evs) != "RUN_STARTED MESSAGES_SNAPSHOT RUN_FINISHED" {
		t.Errorf("nothing in flight: %s", aguiTypes(evs))
	}
}
