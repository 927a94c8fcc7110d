package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// anthropicFake speaks Anthropic's Messages stream (server-sent events,
// usage in message_start and, cumulative, in message_delta); what it does
// depends on the model a request names.
type anthropicFake struct{ countingFake }

// anthropicUsage is what the fake reports for an answer: the input and a
// first output token in message_start, the output in message_delta.
var anthropicUsage = wireUsage{in: 17, out: 4}

func newAnthropicFake(t *testing.T) *anthropicFake {
	f := &anthropicFake{}
	f.start(t, f.serve)
	return f
}

// env points the server's anthropic provider at the fake.
func (f *anthropicFake) env() map[string]string {
	return map[string]string{"ANTHROPIC_BASE_URL": f.srv.URL, "ANTHROPIC_API_KEY": "sk-ant-test"}
}

func (f *anthropicFake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != "sk-ant-test" || r.Header.Get("anthropic-version") != "2023-06-01" ||
		json.Unmarshal(body, &req) != nil || !req.Stream {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error")
		return
	}
	n := f.count(req.Model)
	if req.Model == "throttle-once" && n == 1 {
		w.Header().Set("Retry-After", "1")
		anthropicError(w, http.StatusTooManyRequests, "rate_limit_error")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	send := func(name string, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
		w.(http.Flusher).Flush()
	}
	deltas := func(tokens ...string) {
		for _, tok := range tokens {
			text, _ := json.Marshal(tok)
			send("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+string(text)+`}}`)
		}
	}
	start := func(u wireUsage) {
		send("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"usage":{"input_tokens":%d,"output_tokens":1}}}`, req.Model, u.in))
		send("ping", `{"type":"ping"}`)
	}
	textBlock := func(tokens ...string) {
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		deltas(tokens...)
	}
	stop := func(reason string, u wireUsage) {
		send("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q,"stop_sequence":null},"usage":{"output_tokens":%d}}`, reason, u.out))
		send("message_stop", `{"type":"message_stop"}`)
	}

	switch req.Model {
	case "agent":
		if answer := agentReply(body, `"tool_result"`); answer != "" {
			start(agentAnswerUsage)
			textBlock(answer)
			send("content_block_stop", `{"type":"content_block_stop","index":0}`)
			stop("end_turn", agentAnswerUsage)
			return
		}
		start(agentCallUsage)
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_calc","name":"`+agentTool+`","input":{}}}`)
		for _, fragment := range agentSplit {
			partial, _ := json.Marshal(fragment)
			send("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":`+string(partial)+`}}`)
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		stop("tool_use", agentCallUsage)
		return
	case "pause-mid":
		// Two tokens, then a pause the client may end by leaving.
		start(anthropicUsage)
		textBlock(fakeAnswer[:2]...)
		select {
		case <-r.Context().Done():
			f.canceled <- req.Model
			return
		case <-time.After(pauseFor):
		}
		deltas(fakeAnswer[2:]...)
	case "fail-mid":
		// Overloaded after two tokens: an error event in a 200 stream.
		start(anthropicUsage)
		textBlock(fakeAnswer[:2]...)
		send("error", `{"type":"error","error":{"type":"overloaded_error","message":"RAW-ANTHROPIC-TEXT"}}`)
		return
	default:
		start(anthropicUsage)
		textBlock(fakeAnswer...)
	}
	send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	stop("end_turn", anthropicUsage)
}

// anthropicError answers as the API does a request it refuses.
func anthropicError(w http.ResponseWriter, status int, errType string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":"RAW-ANTHROPIC-TEXT"}}`, errType)
}
