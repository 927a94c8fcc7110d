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

// uiChunk is a UI message stream chunk as the tests read it.
type uiChunk struct {
	Type            string          `json:"type"`
	ID              string          `json:"id"`
	MessageID       string          `json:"messageId"`
	Delta           string          `json:"delta"`
	ToolCallID      string          `json:"toolCallId"`
	ToolName        string          `json:"toolName"`
	Input           json.RawMessage `json:"input"`
	Output          json.RawMessage `json:"output"`
	ErrorText       string          `json:"errorText"`
	FinishReason    string          `json:"finishReason"`
	Reason          string          `json:"reason"`
	MessageMetadata *struct {
		RequestID string      `json:"requestId"`
		Status    string      `json:"status"`
		Usage     *chat.Usage `json:"usage"`
	} `json:"messageMetadata"`
}

// uiChat is what DefaultChatTransport POSTs for a new question.
func uiChat(session, question string) map[string]any {
	return map[string]any{
		"id":      session,
		"trigger": "submit-message",
		"messages": []any{
			map[string]any{"id": "u1", "role": "user", "parts": []any{map[string]any{"type": "text", "text": "an earlier question the server never saw"}}},
			map[string]any{"id": "a1", "role": "assistant", "parts": []any{map[string]any{"type": "text", "text": "a forged answer"}}},
			map[string]any{"id": "u2", "role": "user", "parts": []any{map[string]any{"type": "text", "text": question}}},
		},
	}
}

// readChunks reads a UI message stream until [DONE] (done) or the end, or
// until stop says so.
func readChunks(t *testing.T, resp *http.Response, stop func(uiChunk) bool) (chunks []uiChunk, done bool) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Vercel-Ai-Ui-Message-Stream") != "v1" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("HTTP %d %v %s, want a v1 UI message stream", resp.StatusCode, resp.Header, raw)
	}
	done = sseData(t, resp.Body, func(raw []byte) bool {
		var c uiChunk
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
		return stop == nil || !stop(c)
	})
	return chunks, done
}

// uiText is the answer text the chunks carry, checking every delta is in an
// open text part.
func uiText(t *testing.T, chunks []uiChunk) string {
	t.Helper()
	var b strings.Builder
	open := map[string]bool{}
	for _, c := range chunks {
		switch c.Type {
		case "text-start":
			open[c.ID] = true
		case "text-delta":
			if !open[c.ID] {
				t.Fatalf("text-delta of part %q that is not open", c.ID)
			}
			b.WriteString(c.Delta)
		case "text-end":
			delete(open, c.ID)
		}
	}
	return b.String()
}

func uiTypes(chunks []uiChunk) string {
	types := make([]string, len(chunks))
	for i, c := range chunks {
		types[i] = c.Type
	}
	return collapse(types)
}

// The conformance table of the AI SDK endpoint: a question POSTed as
// DefaultChatTransport does, and the chunks of its answer.
func TestAISDKChatStreamsTheAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	tests := []struct {
		name, session, question string
		types, text             string
	}{{
		name: "text", session: "ai-1", question: "Hello, AI SDK",
		types: "start start-step text-start text-delta… text-end finish-step finish",
		// The server\'s conversation is the context, not the client\'s:
		// this is the session\'s first answer.
		text: demoAnswer("en", "Hello, AI SDK"),
	}, {
		name: "agent run", session: "ai-2", question: demo.AgentTrigger + " go",
		types: "start start-step reasoning-start reasoning-delta… reasoning-end " +
			"tool-input-start tool-input-delta… tool-input-available tool-input-start tool-input-delta tool-input-available " +
			"finish-step tool-output-available… start-step text-start text-delta… text-end finish-step finish",
		text: "The calculator says 6*7 = 42.…",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := uiRequest(t, s, http.MethodPost, "/api/chat", "", uiChat(tt.session, tt.question), nil)
			chunks, done := readChunks(t, resp, nil)
			if !done {
				t.Fatalf("no [DONE] after %s", uiTypes(chunks))
			}
			if got := uiTypes(chunks); got != tt.types {
				t.Errorf("chunks\n%s\nwant\n%s", got, tt.types)
			}
			checkText(t, uiText(t, chunks), tt.text)
			first, last := chunks[0], chunks[len(chunks)-1]
			if first.MessageID == "" || last.FinishReason != "stop" || last.MessageMetadata == nil || last.MessageMetadata.RequestID != first.MessageID ||
				last.MessageMetadata.Usage == nil || last.MessageMetadata.Usage.OutputTokens == 0 {
				t.Errorf("start %+v, finish %+v: want the request id as messageId, finish stop with usage", first, last)
			}
			for _, c := range chunks {
				if strings.Contains(string(c.Input)+c.Delta, demo.AgentSignature) {
					t.Fatal("the reasoning's signature was shown")
				}
			}
			waitTurn(t, s, "", tt.session, first.MessageID, "COMPLETE")
			// Nothing in flight now: resume has no content.
			if resp := uiRequest(t, s, http.MethodGet, "/api/chat/"+tt.session+"/stream", "", nil, nil); resp.StatusCode != http.StatusNoContent {
				t.Errorf("resume after the end: HTTP %d, want 204", resp.StatusCode)
			}
		})
	}
}

// A client that reloads mid-answer resumes it from the durable log: the
// whole answer, nothing missing or doubled, then live to its end.
func TestAISDKResumeMidAnswer(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "40ms")
	const session, question = "ai-resume", "resume me"
	resp := uiRequest(t, s, http.MethodPost, "/api/chat", "", uiChat(session, question), nil)
	deltas := 0
	first, done := readChunks(t, resp, func(c uiChunk) bool {
		if c.Type == "text-delta" {
			deltas++
		}
		return deltas == 3
	})
	if done {
		t.Fatal("the answer ended before the reload")
	}
	resp.Body.Close() // the page reloads
	resumed := uiRequest(t, s, http.MethodGet, "/api/chat/"+session+"/stream", "", nil, nil)
	chunks, done := readChunks(t, resumed, nil)
	if !done {
		t.Fatalf("the resumed stream ended without [DONE]: %s", uiTypes(chunks))
	}
	if chunks[0].Type != "start" || chunks[0].MessageID != first[0].MessageID {
		t.Errorf("resumed from %+v, want the same answer's start", chunks[0])
	}
	if got, want := uiText(t, chunks), demoAnswer("en", question); got != want {
		t.Errorf("resumed text %q, want %q", got, want)
	}
	if got, want := uiTypes(chunks), "start start-step text-start text-delta… text-end finish-step finish"; got != want {
		t.Errorf("resumed chunks %s, want %s", got, want)
	}
}

// Stop reaches the provider: the answer ends cancelled for every viewer, and
// the stored conversation says so.
func TestAISDKStopCancelsAtTheProvider(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "40ms")
	const session = "ai-stop"
	resp := uiRequest(t, s, http.MethodPost, "/api/chat", "", uiChat(session, "a long answer, please"), nil)
	var request string
	chunks, _ := readChunks(t, resp, func(c uiChunk) bool {
		if c.Type == "start" {
			request = c.MessageID
		}
		return c.Type == "text-delta"
	})
	stop := uiRequest(t, s, http.MethodPost, "/api/chat/"+session+"/stop", "", "{}", nil)
	var res struct {
		RequestID string `json:"requestId"`
		Cancelled bool   `json:"cancelled"`
	}
	if err := json.NewDecoder(stop.Body).Decode(&res); err != nil || stop.StatusCode != http.StatusOK || !res.Cancelled || res.RequestID != request {
		t.Fatalf("stop: HTTP %d %+v %v, want the answer %s cancelled", stop.StatusCode, res, err, request)
	}
	rest, done := readChunks(t, resp, nil)
	chunks = append(chunks, rest...)
	if !done || chunks[len(chunks)-1].Type != "abort" {
		t.Fatalf("the stream ended %s, want abort then [DONE]", uiTypes(chunks))
	}
	if meta := chunks[len(chunks)-2].MessageMetadata; meta == nil || meta.Status != "CANCELLED" {
		t.Errorf("metadata before abort: %+v", chunks[len(chunks)-2])
	}
	stored := waitTurn(t, s, "", session, request, "CANCELLED")
	if got := uiText(t, chunks); !strings.HasPrefix(demoAnswer("en", "a long answer, please"), got) || got == "" || stored.Text != got {
		t.Errorf("shown %q, stored %q: want the same partial answer", got, stored.Text)
	}
	// Stopping again finds nothing in flight.
	again := uiRequest(t, s, http.MethodPost, "/api/chat/"+session+"/stop", "", "{}", nil)
	if raw, _ := io.ReadAll(again.Body); again.StatusCode != http.StatusOK || string(raw) != "{\"cancelled\":false}\n" {
		t.Errorf("a second stop: HTTP %d %s", again.StatusCode, raw)
	}
}

// The AI SDK endpoints are held to the GraphQL endpoint's policy: who may
// touch a session, which pages may call, how large a request may be.
func TestAISDKSecurity(t *testing.T) {
	// alice's answer streams, slowly, while bob tries, until she stops it.
	s := twoUsers(t, "--demo-token-interval", "300ms", "--max-body-bytes", "4096", "--max-message-bytes", "100")
	resp := uiRequest(t, s, http.MethodPost, "/api/chat", keyA, uiChat("ai-alice", "mine"), nil)
	shown, _ := readChunks(t, resp, func(c uiChunk) bool { return c.Type == "text-delta" })
	foreign := http.Header{"Origin": {"https://evil.example"}}
	tests := []struct {
		name, method, path, key string
		body                    any
		header                  http.Header
		status                  int
		code                    string
	}{
		{"bob asks in alice's session", http.MethodPost, "/api/chat", keyB, uiChat("ai-alice", "yours?"), nil, http.StatusForbidden, chat.CodeForbidden},
		{"bob resumes alice's answer", http.MethodGet, "/api/chat/ai-alice/stream", keyB, nil, nil, http.StatusForbidden, chat.CodeForbidden},
		{"bob stops alice's answer", http.MethodPost, "/api/chat/ai-alice/stop", keyB, "{}", nil, http.StatusForbidden, chat.CodeForbidden},
		{"no key", http.MethodPost, "/api/chat", "", uiChat("ai-x", "hi"), nil, http.StatusUnauthorized, chat.CodeUnauthenticated},
		{"no key resumes", http.MethodGet, "/api/chat/ai-alice/stream", "", nil, nil, http.StatusUnauthorized, chat.CodeUnauthenticated},
		{"a wrong key stops", http.MethodPost, "/api/chat/ai-alice/stop", "wrong-key-0123456789", "{}", nil, http.StatusUnauthorized, chat.CodeUnauthenticated},
		{"a foreign page asks", http.MethodPost, "/api/chat", keyA, uiChat("ai-alice", "hi"), foreign, http.StatusForbidden, chat.CodeForbidden},
		{"a foreign page resumes", http.MethodGet, "/api/chat/ai-alice/stream", keyA, nil, foreign, http.StatusForbidden, chat.CodeForbidden},
		{"a foreign page stops", http.MethodPost, "/api/chat/ai-alice/stop", keyA, "{}", foreign, http.StatusForbidden, chat.CodeForbidden},
		{"a body over the limit", http.MethodPost, "/api/chat", keyA, uiChat("ai-a2", strings.Repeat("x", 5000)), nil, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"},
		{"a question over the limit", http.MethodPost, "/api/chat", keyA, uiChat("ai-a2", strings.Repeat("x", 101)), nil, http.StatusRequestEntityTooLarge, chat.CodeMessageTooLarge},
		{"an empty question", http.MethodPost, "/api/chat", keyA, uiChat("ai-a2", " "), nil, http.StatusBadRequest, chat.CodeEmptyMessage},
		{"not JSON", http.MethodPost, "/api/chat", keyA, "id=ai-a2", nil, http.StatusBadRequest, chat.CodeBadInput},
		{"a batch", http.MethodPost, "/api/chat", keyA, "[{}]", nil, http.StatusBadRequest, chat.CodeBadInput},
		{"a bad chat id", http.MethodGet, "/api/chat/a.b/stream", keyA, nil, nil, http.StatusBadRequest, chat.CodeBadSessionID},
		{"a stop without a JSON body", http.MethodPost, "/api/chat/ai-alice/stop", keyA, nil, nil, http.StatusUnsupportedMediaType, chat.CodeBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, tt.name, uiRequest(t, s, tt.method, tt.path, tt.key, tt.body, tt.header), tt.status, tt.code)
		})
	}
	// The streams are counted and the refusals logged as GraphQL's are.
	s.waitForMetric(t, `tokencast_connections{protocol="aisdk"} 1`)
	s.waitForMetric(t, `tokencast_asks_total{code="FORBIDDEN"} 1`)
	if logs := s.stderr.String(); !strings.Contains(logs, `msg="refused a browser origin"`) || !strings.Contains(logs, `on="AI SDK chat"`) {
		t.Errorf("the foreign origin was not logged:\n%s", logs)
	}
	// None of it touched alice's answer: it streams on until she stops it.
	if stop := uiRequest(t, s, http.MethodPost, "/api/chat/ai-alice/stop", keyA, "{}", nil); stop.StatusCode != http.StatusOK {
		t.Fatalf("alice's stop: HTTP %d", stop.StatusCode)
	}
	rest, done := readChunks(t, resp, nil)
	shown = append(shown, rest...)
	if !done || shown[len(shown)-1].Type != "abort" || !strings.HasPrefix(demoAnswer("en", "mine"), uiText(t, shown)) {
		t.Fatalf("alice's answer ended %s %q", uiTypes(shown), uiText(t, shown))
	}
	// Her own page's origin is welcome.
	waitTurn(t, s, keyA, "ai-alice", shown[0].MessageID, "CANCELLED")
	own := uiRequest(t, s, http.MethodGet, "/api/chat/ai-alice/stream", keyA, nil, http.Header{"Origin": {"http://" + s.addr}})
	if own.StatusCode != http.StatusNoContent {
		t.Errorf("resume from the server's own origin: HTTP %d", own.StatusCode)
	}
	s.waitForMetric(t, `tokencast_connections{protocol="aisdk"} 0`)
}
