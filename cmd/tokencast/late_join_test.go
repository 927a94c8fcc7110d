package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The late-join window: the AWS sample's UI sends its question without
// waiting for its subscription to be acknowledged, so a fast answer may be
// over before the subscription lands. A subscription without a cursor is
// replayed the session's latest answer, whole and once, if it ended less than
// --late-join-window ago; one with a cursor gets what follows the cursor and
// nothing else.

// instant makes the demo model answer at once, so an answer is over before a
// late subscriber could possibly have caught it in flight.
var instant = []string{"--demo-ttft", "0s", "--demo-token-interval", "0s"}

const subscriptionAfter = `subscription Watch($sessionId: String!, $after: String) {
  onSendMessage(sessionId: $sessionId, after: $after) {
    sessionId message locale timeStamp type requestId index cursor stopReason model
    usage { inputTokens outputTokens totalTokens }
    error { code message }
  }
}`

func TestLateJoinWindowReplaysAnAnswerThatJustEnded(t *testing.T) {
	const session = "s-late"
	first, second := "Was I too quick?", "And now?"

	// The replay waits --late-join-grace for a question of the subscriber's
	// own; here none comes.
	args := append([]string{"--late-join-grace", "100ms"}, instant...)

	t.Run("nobody was watching", func(t *testing.T) {
		s := start(t, "", nil, args...)
		req := s.ask(t, "", session, first, "en")
		s.waitForAnswers(t, 1)
		late := dialWS(t, s)
		late.init(nil)
		late.subscribe("1", session)
		checkAnswer(t, late.answer("1", req), req, demoAnswer("en", first))
		// Once: what comes next is the next answer, from its START.
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, late.answer("1", req2), req2, demoAnswer("en", first, second))
	})

	t.Run("another tab saw it live and is still open", func(t *testing.T) {
		s := start(t, "", nil, args...)
		tab := subscribed(t, s, session, nil)
		req := s.ask(t, "", session, first, "en")
		seen := tab.answer("1", req)
		late := dialWS(t, s)
		late.init(nil)
		late.subscribe("1", session)
		got := late.answer("1", req)
		checkAnswer(t, got, req, demoAnswer("en", first))
		if !equalEvents(got, seen) {
			t.Fatalf("the late tab got %s, the live one %s", types(got), types(seen))
		}
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, late.answer("1", req2), req2, demoAnswer("en", first, second))
	})

	t.Run("over SSE", func(t *testing.T) {
		s := start(t, "", nil, args...)
		req := s.ask(t, "", session, first, "fr")
		s.waitForAnswers(t, 1)
		sse := sseSubscribe(t, s, session, "")
		checkAnswer(t, sse.answer(req), req, demoAnswer("fr", first))
		req2 := s.ask(t, "", session, second, "fr")
		checkAnswer(t, sse.answer(req2), req2, demoAnswer("fr", first, second))
	})
}

func TestCursorAtAnEndIsNotGivenThatAnswerAgain(t *testing.T) {
	const session = "s-cursor"
	first, second := "First question", "Second question"
	// seenLive asks the first question with a tab open and returns the
	// cursor of its END, then closes the tab: the user comes back within the
	// late-join window.
	seenLive := func(t *testing.T, s *server) string {
		t.Helper()
		tab := subscribed(t, s, session, nil)
		req := s.ask(t, "", session, first, "en")
		seen := tab.answer("1", req)
		tab.conn.Close(websocket.StatusNormalClosure, "")
		s.waitForSubscriptions(t, 0)
		return seen[len(seen)-1].Cursor
	}

	// A replay wrongly scheduled would come at once, before the next answer.
	args := append([]string{"--late-join-grace", "1ms"}, instant...)

	t.Run("WebSocket", func(t *testing.T) {
		s := start(t, "", nil, args...)
		cursor := seenLive(t, s)
		back := dialWS(t, s)
		back.init(nil)
		if got := back.subscribeAfterReplayed("1", session, cursor); len(got) != 0 {
			t.Fatalf("back after the END's cursor, the subscriber was replayed %s of %q", types(got), got[0].RequestID)
		}
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, back.answer("1", req2), req2, demoAnswer("en", first, second))
	})

	t.Run("SSE", func(t *testing.T) {
		s := start(t, "", nil, args...)
		cursor := seenLive(t, s)
		sse := sseSubscribe(t, s, session, cursor)
		s.waitForSubscriptions(t, 1) // so the second question comes after it
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, sse.answer(req2), req2, demoAnswer("en", first, second))
	})
}

func TestWithoutLateJoinWindowAnEndedAnswerIsNotReplayed(t *testing.T) {
	const session = "s-nowindow"
	first, second := "Was I too quick?", "And now?"
	args := append([]string{"--late-join-window", "0s", "--late-join-grace", "1ms"}, instant...)

	t.Run("WebSocket", func(t *testing.T) {
		s := start(t, "", nil, args...)
		s.ask(t, "", session, first, "en")
		s.waitForAnswers(t, 1)
		late := dialWS(t, s)
		late.init(nil)
		if got := late.subscribeReplayed("1", session); len(got) != 0 {
			t.Fatalf("with no late-join window, a new subscriber was replayed %s", types(got))
		}
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, late.answer("1", req2), req2, demoAnswer("en", first, second))
	})

	t.Run("SSE", func(t *testing.T) {
		s := start(t, "", nil, args...)
		s.ask(t, "", session, first, "en")
		s.waitForAnswers(t, 1)
		sse := sseSubscribe(t, s, session, "")
		s.waitForSubscriptions(t, 1)
		req2 := s.ask(t, "", session, second, "en")
		checkAnswer(t, sse.answer(req2), req2, demoAnswer("en", first, second))
	})
}

// subscribeAfterReplayed subscribes after a cursor and returns what the
// subscription was replayed before it went live (see subscribeReplayed).
func (c *wsClient) subscribeAfterReplayed(id, session, after string) []event {
	c.t.Helper()
	c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": subscriptionAfter,
		"variables": map[string]any{"sessionId": session, "after": after}}})
	return c.replayedUntilPong(id)
}

// waitForAnswers waits until the server has ended n answers: the worker
// counts an answer once its END is published.
func (s *server) waitForAnswers(t *testing.T, n int) {
	t.Helper()
	s.waitForMetric(t, `tokencast_answers_total{code="",model="demo:default",outcome="END"} `+strconv.Itoa(n))
}

// waitForSubscriptions waits until n subscriptions are attached on the
// server.
func (s *server) waitForSubscriptions(t *testing.T, n int) {
	t.Helper()
	s.waitForMetric(t, "tokencast_subscriptions "+strconv.Itoa(n))
}

func (s *server) waitForMetric(t *testing.T, line string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + s.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if l == line {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", line)
		}
	}
}

// sseStream is a GraphQL over SSE subscription (distinct connections mode).
type sseStream struct {
	t  *testing.T
	sc *bufio.Scanner
}

// sseSubscribe subscribes to a session over SSE, after a cursor unless it is
// empty.
func sseSubscribe(t *testing.T, s *server, session, after string) *sseStream {
	t.Helper()
	vars := map[string]any{"sessionId": session}
	if after != "" {
		vars["after"] = after
	}
	body, _ := json.Marshal(map[string]any{"query": subscriptionAfter, "variables": vars})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE subscription: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseStream{t: t, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next onSendMessage event.
func (s *sseStream) next() event {
	s.t.Helper()
	name := ""
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && name == "next":
			var p struct {
				Data struct {
					OnSendMessage event `json:"onSendMessage"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &p); err != nil {
				s.t.Fatal(err)
			}
			return p.Data.OnSendMessage
		case strings.HasPrefix(line, "data: "):
			s.t.Fatalf("SSE %s: %s", name, line)
		}
	}
	s.t.Fatalf("SSE stream ended: %v", s.sc.Err())
	return event{}
}

// answer reads events until the answer to request ends; an event of any
// other request first fails the test.
func (s *sseStream) answer(request string) []event {
	s.t.Helper()
	var evs []event
	for {
		ev := s.next()
		if ev.RequestID != request {
			s.t.Fatalf("event of request %q while waiting for %q: %+v", ev.RequestID, request, ev)
		}
		evs = append(evs, ev)
		if ev.Type == "END" || ev.Type == "ERROR" || ev.Type == "CANCELLED" {
			return evs
		}
	}
}
