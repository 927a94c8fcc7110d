package agui

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

// logHub replays a session's stored events after the subscriber's cursor.
type logHub struct{ events []chat.Event }

func (h logHub) Subscribe(ctx context.Context, _ string, after *uint64, sink hub.Sink) (*hub.Subscriber, error) {
	sink.(hub.Attacher).Attached()
	for _, ev := range h.events {
		if after != nil && ev.Seq > *after {
			if err := sink.Replay(ctx, &hub.Shared{Event: ev}); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// pausedRun is a thread whose run r1 is in flight, and answers approvals.
type pausedRun struct{}

func (pausedRun) Ask(context.Context, model.GetLlmResponseInput) (string, error) { return "r1", nil }
func (pausedRun) Approve(context.Context, string, string, string, bool, string) error {
	return nil
}
func (pausedRun) Pending(context.Context, string) (string, *uint64, error) {
	var from uint64
	return "r1", &from, nil
}
func (pausedRun) Turns(context.Context, string) ([]chat.Turn, error) {
	return []chat.Turn{{RequestID: "r1", Role: chat.RoleUser, Text: "deploy"}, {RequestID: "r1", Role: chat.RoleAssistant, Status: chat.StatusInProgress}}, nil
}
func (pausedRun) EventAt(context.Context, string, uint64) (*chat.Event, error) { return nil, nil }

// Parallel tool calls, one waiting for approval: the results that came
// before the pause are shown by the run that pauses, those after it by
// the run that resumes; none twice, none lost.
func TestParallelResultsAroundAnApprovalPause(t *testing.T) {
	var evs []chat.Event
	add := func(ev chat.Event) {
		ev.RequestID, ev.SessionID, ev.Index, ev.Seq = "r1", "t", len(evs), uint64(len(evs)+1)
		evs = append(evs, ev)
	}
	tool := func(typ chat.EventType, call, name, out string) chat.Event {
		return chat.Event{Type: typ, Tool: &chat.ToolEvent{CallID: call, Name: name, Input: json.RawMessage(`{}`), Output: out}}
	}
	add(chat.Event{Type: chat.EventStart})
	for _, c := range [][2]string{{"c1", "calculator"}, {"c2", "deploy"}, {"c3", "clock"}} {
		add(tool(chat.EventToolCallStart, c[0], c[1], ""))
		add(tool(chat.EventToolCall, c[0], c[1], ""))
	}
	add(chat.Event{Type: chat.EventStep, Step: &chat.StepInfo{Number: 1, Reason: "tool_use", Continues: true}})
	add(tool(chat.EventToolResult, "c1", "calculator", "42"))
	add(chat.Event{Type: chat.EventApprovalRequested, Approval: &chat.ApprovalInfo{CallID: "c2", Tool: "deploy"}})
	pause := evs[len(evs)-1].Seq
	add(tool(chat.EventToolResult, "c3", "clock", "noon"))
	add(chat.Event{Type: chat.EventApproval, Approval: &chat.ApprovalInfo{CallID: "c2", Tool: "deploy", Approved: true}})
	add(tool(chat.EventToolResult, "c2", "deploy", "deployed"))
	add(chat.Event{Type: chat.EventDelta, Message: "Done."})
	add(chat.Event{Type: chat.EventStep, Step: &chat.StepInfo{Number: 2, Reason: "end_turn"}})
	add(chat.Event{Type: chat.EventEnd, StopReason: "end_turn"})

	log := slog.New(slog.DiscardHandler)
	streams := stream.NewAnswers(stream.AnswersConfig{}, stream.NewPolicy(stream.Config{}, nil, log), logHub{evs})
	s := NewServer(streams, pausedRun{}, 0, log)
	run := func(body string) (results []string, last aguiEvent) {
		t.Helper()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("POST", "/api/agui", strings.NewReader(body)))
		sc := bufio.NewScanner(w.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev aguiEvent
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("%s: %v", data, err)
			}
			if ev.Type == "TOOL_CALL_RESULT" {
				results = append(results, ev.ToolCallID+"="+ev.Content)
			}
			last = ev
		}
		return results, last
	}

	first, paused := run(`{"threadId":"t","runId":"r1","messages":[]}`)
	if got := strings.Join(first, " "); got != "c1=42" {
		t.Errorf("the run that pauses shows results %q, want c1=42", got)
	}
	want := Interrupt{Request: "r1", Seq: pause, Call: "c2"}.ID()
	if paused.Type != "RUN_FINISHED" || paused.Outcome == nil || len(paused.Outcome.Interrupts) != 1 || paused.Outcome.Interrupts[0].ID != want {
		t.Fatalf("the first run ends with %+v, want the interrupt of c2", paused)
	}
	second, end := run(`{"threadId":"t","runId":"r2","messages":[],"resume":[{"interruptId":"` + paused.Outcome.Interrupts[0].ID + `","status":"resolved"}]}`)
	if got := strings.Join(second, " "); got != "c3=noon c2=deployed" {
		t.Errorf("the resumed run shows results %q, want c3=noon c2=deployed", got)
	}
	if end.Type != "RUN_FINISHED" || end.Outcome == nil || end.Outcome.Type != "success" {
		t.Errorf("the resumed run ends with %+v", end)
	}
}

// aguiEvent is an AG-UI event as the test reads it.
type aguiEvent struct {
	Type       string `json:"type"`
	ToolCallID string `json:"toolCallId"`
	Content    string `json:"content"`
	Outcome    *struct {
		Type       string `json:"type"`
		Interrupts []struct {
			ID string `json:"id"`
		} `json:"interrupts"`
	} `json:"outcome"`
}
