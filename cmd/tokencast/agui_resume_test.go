package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

// resumedEvent is an AG-UI event with the id tokencast gives it: on the
// last event made of a stored event, metadata.eventId, the SSE id line's.
type resumedEvent struct {
	aguiEvent
	Metadata *struct {
		EventID string `json:"eventId"`
	} `json:"metadata"`
	id string // the SSE id line before it, "" for none
}

// readUntil reads a run's events with their SSE ids until stop says so or
// the run ends.
func readUntil(t *testing.T, resp *http.Response, stop func(resumedEvent) bool) []resumedEvent {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d, want an event stream", resp.StatusCode)
	}
	var evs []resumedEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	id := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev resumedEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		ev.id, id = id, ""
		if ev.Metadata != nil && ev.Metadata.EventID != ev.id {
			t.Fatalf("metadata.eventId %q, SSE id %q", ev.Metadata.EventID, ev.id)
		}
		evs = append(evs, ev)
		if stop(ev) || ev.Type == "RUN_FINISHED" || ev.Type == "RUN_ERROR" {
			break
		}
	}
	return evs
}

func resumedTypes(evs []resumedEvent) string {
	plain := make([]aguiEvent, len(evs))
	for i, ev := range evs {
		plain[i] = ev.aguiEvent
	}
	return aguiTypes(plain)
}

func resumedText(evs []resumedEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Type == "TEXT_MESSAGE_CONTENT" {
			b.WriteString(ev.Delta)
		}
	}
	return b.String()
}

// lastID is the id of the last event that has one.
func lastID(t *testing.T, evs []resumedEvent) string {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].id != "" {
			return evs[i].id
		}
	}
	t.Fatalf("no event has an id: %s", resumedTypes(evs))
	return ""
}

// A client whose run broke off mid-answer runs again with the id of the
// last event it holds, as forwardedProps.lastEventId or Last-Event-ID: the
// new run is valid on its own (the step and the message in flight opened
// again, under the message's own id) and holds exactly what followed that
// event; the question it carries again is not asked again.
func TestAGUIResumeAfterLastEventID(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "40ms")
	question := "resume me after my last event"
	for _, how := range []string{"forwardedProps", "Last-Event-ID"} {
		t.Run(how, func(t *testing.T) {
			thread := "ag-last-" + strings.ToLower(strings.ReplaceAll(how, "-", ""))
			deltas := 0
			first := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", runInput(thread, "run-1", question), nil), func(ev resumedEvent) bool {
				if ev.Type == "TEXT_MESSAGE_CONTENT" {
					deltas++
				}
				return deltas == 3
			})
			messageID := first[len(first)-1].MessageID
			last := lastID(t, first)

			in := runInput(thread, "run-2", question) // HttpAgent sends its history again
			var header http.Header
			if how == "forwardedProps" {
				in["forwardedProps"] = map[string]any{"lastEventId": last}
			} else {
				header = http.Header{"Last-Event-Id": {last}}
			}
			again := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", in, header), func(resumedEvent) bool { return false })
			want := "RUN_STARTED STEP_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT… TEXT_MESSAGE_END STEP_FINISHED RUN_FINISHED"
			if got := resumedTypes(again); got != want {
				t.Fatalf("the run after the last event:\n%s\nwant\n%s", got, want)
			}
			if again[0].RunID != "run-2" || again[2].MessageID != messageID || again[1].aguiEvent.Type != "STEP_STARTED" {
				t.Errorf("run %q, message %q, want run-2 and the message in flight %q", again[0].RunID, again[2].MessageID, messageID)
			}
			if got := resumedText(first) + resumedText(again); got != demoAnswer("en", question) {
				t.Errorf("the client holds %q, want %q", got, demoAnswer("en", question))
			}
			waitTurn(t, s, "", thread, "run-1", "COMPLETE")
			asked := 0
			for _, tr := range s.conversation(t, "", thread) {
				if tr.Role == "USER" {
					asked++
				}
			}
			if asked != 1 {
				t.Errorf("%d questions in the thread, want 1: a run with a last event id asks nothing", asked)
			}

			// Back with the id of the run's last event: nothing follows,
			// and the run ends as the answer did.
			in = runInput(thread, "run-3", "")
			in["forwardedProps"] = map[string]any{"lastEventId": lastID(t, again)}
			if end := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", "", in, nil), func(resumedEvent) bool { return false }); resumedTypes(end) != "RUN_STARTED RUN_FINISHED" ||
				end[1].Outcome == nil || end[1].Outcome.Type != "success" {
				t.Errorf("after the last event of the answer: %s", resumedTypes(end))
			}
		})
	}
}

// A last event id names an event of the caller's own thread or is refused
// with INVALID_CURSOR, whatever is wrong with it: it never reaches another
// thread's events, and another principal's thread stays FORBIDDEN.
func TestAGUIResumeAfterLastEventIDIsTheCallersOwn(t *testing.T) {
	s := twoUsers(t)
	alice := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", keyA, runInput("ag-alice-id", "run-a", "alice's secret"), nil), func(resumedEvent) bool { return false })
	aliceID := lastID(t, alice)
	bob := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", keyB, runInput("ag-bob-id", "run-b", "bob's"), nil), func(resumedEvent) bool { return false })
	bobFirst := bob[1].id
	if bobFirst == "" {
		t.Fatalf("bob's STEP_STARTED has no id: %s", resumedTypes(bob))
	}
	rerun := func(thread, last string) map[string]any {
		in := runInput(thread, "again", "")
		in["messages"] = []any{}
		in["forwardedProps"] = map[string]any{"lastEventId": last}
		return in
	}
	tests := []struct {
		name, key string
		body      map[string]any
		status    int
		code      string
	}{
		{"alice's id in bob's thread", keyB, rerun("ag-bob-id", aliceID), http.StatusBadRequest, chat.CodeBadCursor},
		{"bob's id in alice's thread", keyB, rerun("ag-alice-id", bobFirst), http.StatusForbidden, chat.CodeForbidden},
		{"alice's own id in alice's thread, as bob", keyB, rerun("ag-alice-id", aliceID), http.StatusForbidden, chat.CodeForbidden},
		{"an id past the history", keyB, rerun("ag-bob-id", "999999999"), http.StatusBadRequest, chat.CodeBadCursor},
		{"not a position", keyB, rerun("ag-bob-id", "abc"), http.StatusBadRequest, chat.CodeBadCursor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, tt.name, uiRequest(t, s, http.MethodPost, "/api/agui", tt.key, tt.body, nil), tt.status, tt.code)
		})
	}
	// Bob's own id: his answer after its first event, and nothing of alice's.
	own := readUntil(t, uiRequest(t, s, http.MethodPost, "/api/agui", keyB, rerun("ag-bob-id", bobFirst), nil), func(resumedEvent) bool { return false })
	if got := resumedText(own); got != demoAnswer("en", "bob's") || strings.Contains(got, "secret") {
		t.Errorf("bob after his first event: %s %q", resumedTypes(own), got)
	}
}

// Two POSTs of one runId at once ask one question: both streams hold the
// one answer, whole and in order, and the thread has one question.
func TestAGUISameRunIDTwiceAtOnce(t *testing.T) {
	s := start(t, "", nil, fast...)
	question := "twice at once"
	type posted struct {
		resp *http.Response
		err  error
	}
	resps := make(chan posted, 2)
	for range 2 {
		req := newUIRequest(t, s, http.MethodPost, "/api/agui", "", runInput("ag-twice", "run-twice", question), nil)
		go func() {
			resp, err := s.client.Do(req)
			resps <- posted{resp, err}
		}()
	}
	for range 2 {
		p := <-resps
		if p.err != nil {
			t.Fatal(p.err)
		}
		t.Cleanup(func() { p.resp.Body.Close() })
		evs := readRun(t, p.resp)
		// One of them may come after the answer ended: the snapshot.
		if got := aguiTypes(evs); got != "RUN_STARTED MESSAGES_SNAPSHOT RUN_FINISHED" && aguiText(evs) != demoAnswer("en", question) {
			t.Errorf("a stream of the run: %s %q", got, aguiText(evs))
		}
	}
	waitTurn(t, s, "", "ag-twice", "run-twice", "COMPLETE")
	if turns := s.conversation(t, "", "ag-twice"); len(turns) != 2 {
		t.Errorf("the thread holds %d turns, want one question and its answer: %+v", len(turns), turns)
	}
}
