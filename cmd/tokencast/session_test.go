package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

const conversationQuery = `query($s: String!) { conversation(sessionId: $s) { sessionId turns { requestId role text status model } } }`

type turn struct {
	RequestID string `json:"requestId"`
	Role      string `json:"role"`
	Text      string `json:"text"`
	Status    string `json:"status"`
}

func (s *server) conversation(t *testing.T, apiKey, session string) []turn {
	t.Helper()
	status, resp := s.post(t, apiKey, conversationQuery, map[string]any{"s": session})
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("conversation: %d %+v", status, resp.Errors)
	}
	var data struct {
		Conversation struct {
			Turns []turn `json:"turns"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		t.Fatal(err)
	}
	return data.Conversation.Turns
}

func (s *server) cancelAnswer(t *testing.T, session, request string) bool {
	t.Helper()
	status, resp := s.post(t, "", `mutation($s: String!, $r: ID!) { cancelResponse(sessionId: $s, requestId: $r) { requestId cancelled } }`, map[string]any{"s": session, "r": request})
	if status != http.StatusOK || len(resp.Errors) > 0 {
		t.Fatalf("cancel: %d %+v", status, resp.Errors)
	}
	var data struct {
		CancelResponse struct {
			Cancelled bool `json:"cancelled"`
		} `json:"cancelResponse"`
	}
	_ = json.Unmarshal(resp.Data, &data)
	return data.CancelResponse.Cancelled
}

func TestResumeAfterCursorGetsExactlyWhatWasMissed(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "10ms", "--demo-token-interval", "15ms", "--coalesce-window", "0")
	a := subscribed(t, s, "s-resume", nil)
	req := s.ask(t, "", "s-resume", "resume me", "en")
	seen := []event{a.next("1"), a.next("1"), a.next("1"), a.next("1")}
	a.conn.CloseNow() // the network drops mid-answer

	c := dialWS(t, s)
	c.init(nil)
	c.send(map[string]any{"id": "r", "type": "subscribe", "payload": map[string]any{
		"query": `subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) {
			sessionId message locale timeStamp type requestId index cursor stopReason model
			usage { inputTokens outputTokens totalTokens } error { code message } } }`,
		"variables": map[string]any{"s": "s-resume", "a": seen[len(seen)-1].Cursor},
	}})
	rest := c.answer("r", req)
	if *rest[0].Index != len(seen) {
		t.Fatalf("resume started at index %d, want %d (right after the cursor)", *rest[0].Index, len(seen))
	}
	checkAnswer(t, append(seen, rest...), req, demoAnswer("en", "resume me"))
}

func TestResumeBeyondHistoryIsToldToResync(t *testing.T) {
	s := start(t, "", nil, append(fast, "--event-retention", "1s")...)
	a := subscribed(t, s, "s-gone", nil)
	req := s.ask(t, "", "s-gone", "soon forgotten", "en")
	evs := a.answer("1", req)
	time.Sleep(2500 * time.Millisecond) // the history expires

	resume := func(id, cursor string) {
		c := dialWS(t, s)
		c.init(nil)
		c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
			"query":     `subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) { type message requestId } }`,
			"variables": map[string]any{"s": "s-gone", "a": cursor},
		}})
		m := c.must(5 * time.Second)
		if m.Type != "next" || !strings.Contains(string(m.Payload), `"type":"RESYNC"`) {
			t.Fatalf("resume from an expired cursor got %s %s, want a RESYNC event", m.Type, m.Payload)
		}
		// Then it is live again.
		r2 := s.ask(t, "", "s-gone", "again", "en")
		m = c.must(5 * time.Second)
		if m.Type != "next" || !strings.Contains(string(m.Payload), `"type":"START"`) || !strings.Contains(string(m.Payload), r2) {
			t.Fatalf("after RESYNC got %s %s, want the next answer's START", m.Type, m.Payload)
		}
	}
	resume("r", evs[0].Cursor)

	c := dialWS(t, s)
	c.init(nil)
	c.send(map[string]any{"id": "bad", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) { type } }`,
		"variables": map[string]any{"s": "s-gone", "a": "not-a-cursor"},
	}})
	m := c.must(5 * time.Second)
	if m.Type != "error" || m.ID != "bad" || !strings.Contains(string(m.Payload), chat.CodeBadCursor) {
		t.Fatalf("bad cursor: %s %s", m.Type, m.Payload)
	}
}

func TestConversationShowsEveryTurnWithItsStatus(t *testing.T) {
	s := start(t, "", nil, fast...)
	c := subscribed(t, s, "s-conv", nil)
	r1 := s.ask(t, "", "s-conv", "one", "en")
	c.answer("1", r1)
	r2 := s.ask(t, "", "s-conv", "two "+demoFail, "en")
	c.answer("1", r2)
	turns := s.conversation(t, "", "s-conv")
	want := []turn{
		{r1, "USER", "one", "COMPLETE"},
		{r1, "ASSISTANT", demoAnswer("en", "one"), "COMPLETE"},
		{r2, "USER", "two " + demoFail, "COMPLETE"},
	}
	if len(turns) != 4 {
		t.Fatalf("%d turns: %+v", len(turns), turns)
	}
	for i, w := range want {
		if turns[i] != w {
			t.Fatalf("turn %d: %+v, want %+v", i, turns[i], w)
		}
	}
	if turns[3].Status != "INCOMPLETE" || turns[3].Role != "ASSISTANT" || turns[3].Text == "" {
		t.Fatalf("failed answer stored as %+v, want its partial text marked INCOMPLETE", turns[3])
	}
}

const demoFail = "[[demo:error]]"

func TestConversationShowsTheAnswerInProgress(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "0", "--demo-token-interval", "40ms", "--coalesce-window", "0")
	c := subscribed(t, s, "s-prog", nil)
	req := s.ask(t, "", "s-prog", "slowly", "en")
	evs := []event{c.next("1"), c.next("1"), c.next("1")}
	turns := s.conversation(t, "", "s-prog")
	if len(turns) != 2 || turns[1].Status != "IN_PROGRESS" || !strings.HasPrefix(turns[1].Text, text(evs)) || turns[1].RequestID != req {
		t.Fatalf("turns %+v, want the answer IN_PROGRESS starting with %q", turns, text(evs))
	}
}

func TestCancelStopsTheAnswerAndKeepsThePartialText(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "0", "--demo-token-interval", "50ms", "--coalesce-window", "0")
	c := subscribed(t, s, "s-stop", nil)
	req := s.ask(t, "", "s-stop", "long answer", "en")
	c.next("1")
	c.next("1")
	if !s.cancelAnswer(t, "s-stop", req) {
		t.Fatal("cancel said the answer had ended")
	}
	evs := c.answer("1", req)
	last := evs[len(evs)-1]
	if last.Type != "CANCELLED" {
		t.Fatalf("answer ended with %s, want CANCELLED", types(evs))
	}
	full := demoAnswer("en", "long answer")
	turns := s.conversation(t, "", "s-stop")
	if len(turns) != 2 || turns[1].Status != "CANCELLED" || turns[1].Text == "" || len(turns[1].Text) >= len(full) || !strings.HasPrefix(full, turns[1].Text) {
		t.Fatalf("turns %+v, want a CANCELLED partial answer", turns)
	}
	if s.cancelAnswer(t, "s-stop", req) {
		t.Fatal("cancelling an ended answer said it cancelled")
	}
}

func TestCancelBeforeTheFirstToken(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "2s", "--coalesce-window", "0")
	c := subscribed(t, s, "s-early", nil)
	req := s.ask(t, "", "s-early", "never mind", "en")
	if !s.cancelAnswer(t, "s-early", req) {
		t.Fatal("cancel said the answer had ended")
	}
	evs := c.answer("1", req)
	if types(evs) != "[START CANCELLED]" {
		t.Fatalf("events %s, want START then CANCELLED without any text", types(evs))
	}
}

func TestAskingAgainWithTheSameRequestIDAttachesToTheSameAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	c := subscribed(t, s, "s-idem", nil)
	vars := map[string]any{"input": map[string]any{"sessionId": "s-idem", "message": "once", "locale": "en", "requestId": "client-req-1"}}
	for range 2 {
		status, resp := s.post(t, "", askQuery, vars)
		if status != http.StatusOK || len(resp.Errors) > 0 || !strings.Contains(string(resp.Data), `"requestId":"client-req-1"`) {
			t.Fatalf("ask: %d %+v %s", status, resp.Errors, resp.Data)
		}
	}
	checkAnswer(t, c.answer("1", "client-req-1"), "client-req-1", demoAnswer("en", "once"))
	r2 := s.ask(t, "", "s-idem", "next", "en")
	// Had the repeat been answered, its events would come before these.
	checkAnswer(t, c.answer("1", r2), r2, demoAnswer("en", "once", "next"))
	if turns := s.conversation(t, "", "s-idem"); len(turns) != 4 {
		t.Fatalf("%d turns, want 4 (one question asked twice is one turn)", len(turns))
	}
}

func TestModels(t *testing.T) {
	s := start(t, "", nil, fast...)
	status, resp := s.post(t, "", `{ models { name default } }`, nil)
	if status != http.StatusOK || string(resp.Data) != `{"models":[{"name":"demo:default","default":true}]}` {
		t.Fatalf("models: %d %s %+v", status, resp.Data, resp.Errors)
	}
	status, resp = s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": "s-m", "message": "hi", "locale": "en", "model": "openai:gpt-unknown"}})
	if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeUnknownModel {
		t.Fatalf("unknown model: %d %+v", status, resp.Errors)
	}
}

// resumeQuery selects what checkAnswer needs, resuming after $a.
const resumeQuery = `subscription($s: String!, $a: String) { onSendMessage(sessionId: $s, after: $a) {
	sessionId message locale timeStamp type requestId index cursor stopReason model
	usage { inputTokens outputTokens totalTokens } error { code message } } }`

// TestResumeOnEveryDialect: the cursor works the same through AppSync real
// time, legacy Apollo and SSE as through graphql-transport-ws: exactly the
// events after it, in order, then live.
func TestResumeOnEveryDialect(t *testing.T) {
	s := start(t, "", nil, fast...)
	a := subscribed(t, s, "s-dialects", nil)
	req := s.ask(t, "", "s-dialects", "resume me anywhere", "en")
	all := a.answer("1", req)
	const seen = 3
	cursor := all[seen-1].Cursor
	want := demoAnswer("en", "resume me anywhere")
	vars := map[string]any{"s": "s-dialects", "a": cursor}

	// onWS reads data frames of one operation until the answer ends.
	onWS := func(c *wsClient, id string) []event {
		var evs []event
		for {
			m := c.must(10 * time.Second)
			if m.Type == "ka" || m.Type == "start_ack" {
				continue
			}
			if m.Type != "data" || m.ID != id {
				t.Fatalf("got %s(%s) %s, want data(%s)", m.Type, m.ID, m.Payload, id)
			}
			var p struct {
				Data struct {
					OnSendMessage event `json:"onSendMessage"`
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, p.Data.OnSendMessage)
			if p.Data.OnSendMessage.Type == "END" {
				return evs
			}
		}
	}
	check := func(t *testing.T, rest []event) {
		t.Helper()
		if len(rest) == 0 || *rest[0].Index != seen {
			t.Fatalf("resumed with %s, want index %d first", types(rest), seen)
		}
		checkAnswer(t, append(append([]event(nil), all[:seen]...), rest...), req, want)
	}

	t.Run("appsync", func(t *testing.T) {
		c := dialAppSync(t, s, "/graphql/realtime", "")
		c.send(map[string]any{"type": "connection_init"})
		data, _ := json.Marshal(map[string]any{"query": resumeQuery, "variables": vars})
		c.send(map[string]any{"id": "r", "type": "start", "payload": map[string]any{
			"data": string(data), "extensions": map[string]any{"authorization": map[string]any{"host": "example.com"}},
		}})
		if m := c.must(5 * time.Second); m.Type != "connection_ack" {
			t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		check(t, onWS(c, "r"))
	})
	t.Run("legacy apollo", func(t *testing.T) {
		c := dialAppSync(t, s, "/graphql", "")
		c.send(map[string]any{"type": "connection_init", "payload": map[string]any{}})
		if m := c.must(5 * time.Second); m.Type != "connection_ack" {
			t.Fatalf("got %s %s", m.Type, m.Payload)
		}
		c.send(map[string]any{"id": "r", "type": "start", "payload": map[string]any{"query": resumeQuery, "variables": vars}})
		check(t, onWS(c, "r"))
	})
	t.Run("sse", func(t *testing.T) {
		resp := openSSEQuery(t, s, "", "", resumeQuery, vars)
		var rest []event
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || line == "" {
				continue
			}
			var p struct {
				Data struct {
					OnSendMessage event `json:"onSendMessage"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatalf("sse data %q: %v", line, err)
			}
			rest = append(rest, p.Data.OnSendMessage)
			if p.Data.OnSendMessage.Type == "END" {
				break
			}
		}
		check(t, rest)
	})
}

// conversation pages: the newest questions first, older ones by before.
func TestConversationPages(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "1ms", "--demo-token-interval", "1ms")
	c := subscribed(t, s, "paged", nil)
	var asked []string
	for _, q := range []string{"one", "two", "three"} {
		r := s.ask(t, "", "paged", q, "en")
		c.answer("1", r)
		asked = append(asked, r)
	}
	const page = `query($s: String!, $last: Int!, $before: ID) { conversation(sessionId: $s, last: $last, before: $before) { hasOlder turns { requestId role status } } }`
	read := func(last int, before any) ([]string, bool) {
		t.Helper()
		status, resp := s.post(t, "", page, map[string]any{"s": "paged", "last": last, "before": before})
		if status != http.StatusOK || len(resp.Errors) > 0 {
			t.Fatalf("conversation: %d %+v", status, resp.Errors)
		}
		var data struct {
			Conversation struct {
				HasOlder bool   `json:"hasOlder"`
				Turns    []turn `json:"turns"`
			} `json:"conversation"`
		}
		if err := json.Unmarshal(resp.Data, &data); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tu := range data.Conversation.Turns {
			ids = append(ids, tu.RequestID+":"+tu.Role)
		}
		return ids, data.Conversation.HasOlder
	}
	got, older := read(2, nil)
	want := []string{asked[1] + ":USER", asked[1] + ":ASSISTANT", asked[2] + ":USER", asked[2] + ":ASSISTANT"}
	if strings.Join(got, " ") != strings.Join(want, " ") || !older {
		t.Fatalf("newest page %v (older: %v), want %v and older", got, older, want)
	}
	got, older = read(2, asked[1])
	if strings.Join(got, " ") != asked[0]+":USER "+asked[0]+":ASSISTANT" || older {
		t.Fatalf("older page %v (older: %v)", got, older)
	}
	status, resp := s.post(t, "", page, map[string]any{"s": "paged", "last": 501})
	if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeBadInput {
		t.Fatalf("last 501: %d %+v, want BAD_USER_INPUT", status, resp.Errors)
	}
}

// Cancels are writes, limited per principal like asks, in a bucket of their
// own: a flood of them is refused with RATE_LIMITED and costs no ask.
func TestCancelsAreRateLimited(t *testing.T) {
	s := start(t, "", nil, "--ask-rate", "1", "--ask-burst", "2", "--demo-ttft", "5s")
	r := s.ask(t, "", "cancels", "slow, please", "en")
	codes := []string{}
	for range 3 {
		_, resp := s.post(t, "", `mutation($s: String!, $r: ID!) { cancelResponse(sessionId: $s, requestId: $r) { cancelled } }`, map[string]any{"s": "cancels", "r": r})
		code := "ok"
		if len(resp.Errors) > 0 {
			code, _ = resp.Errors[0].Extensions["code"].(string)
		}
		codes = append(codes, code)
	}
	if strings.Join(codes, " ") != "ok ok RATE_LIMITED" {
		t.Fatalf("three cancels with a burst of 2: %v", codes)
	}
	s.ask(t, "", "cancels", "the ask budget is untouched", "en")
}
