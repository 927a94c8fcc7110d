package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// This file owns the script every provider fake plays, each in its own
// wire format, for the usage tests: an agent run of two model calls and
// the usage each call reports; and what the Anthropic and Ollama fakes
// share (countingFake).

// wireUsage is what a provider fake reports for one model call.
type wireUsage struct{ in, out int }

// For the model id "agent" a fake asks for the calculator on the first
// call; on the second, whose request carries the tool's result, it
// answers with that result. Each call reports its own usage.
var (
	agentCallUsage   = wireUsage{in: 31, out: 12}
	agentAnswerUsage = wireUsage{in: 57, out: 9}
)

const (
	agentTool  = "calculator"
	agentInput = `{"expression":"6*7"}`
	// agentAnswerText is the second call's answer when the request
	// carried the calculator's 42.
	agentAnswerText = "The calculator says 42."
)

// agentReply is what the fake answers a request of the agent run: the
// answer when body carries a tool result (resultMarker is how the
// provider's format marks one), "" when the run is at its first call.
func agentReply(body []byte, resultMarker string) string {
	if !bytes.Contains(body, []byte(resultMarker)) {
		return ""
	}
	if bytes.Contains(body, []byte("42")) {
		return agentAnswerText
	}
	return "The calculator said nothing."
}

// agentSplit is the calculator's input in two fragments, as providers
// stream a tool call's arguments.
var agentSplit = [2]string{agentInput[:len(`{"expression":`)], agentInput[len(`{"expression":`):]}

// agent plays the agent run in chat completions chunks: the call's
// arguments in two fragments and finish_reason tool_calls, or the answer;
// then the usage chunk.
func (f *openAIFake) agent(w http.ResponseWriter, messages []byte, chunk func(string)) {
	usage := agentCallUsage
	if answer := agentReply(messages, `"role":"tool"`); answer != "" {
		usage = agentAnswerUsage
		chunk(answer)
		fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	} else {
		fmt.Fprintf(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_calc\",\"type\":\"function\",\"function\":{\"name\":%q,\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n", agentTool)
		for _, fragment := range agentSplit {
			fmt.Fprintf(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":%q}}]},\"finish_reason\":null}]}\n\n", fragment)
		}
		fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n")
	}
	fmt.Fprintf(w, "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", usage.in, usage.out, usage.in+usage.out)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// agent plays the agent run in ConverseStream events: a toolUse block
// whose input arrives in two fragments and stopReason tool_use, or the
// answer; then the metadata event with the call's usage.
func (f *bedrockFake) agent(send func(messageType, name, payload string), body []byte) {
	usage, stop := agentCallUsage, "tool_use"
	send("event", "messageStart", `{"role":"assistant"}`)
	if answer := agentReply(body, `"toolResult"`); answer != "" {
		usage, stop = agentAnswerUsage, "end_turn"
		text, _ := json.Marshal(answer)
		send("event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":`+string(text)+`}}`)
		send("event", "contentBlockStop", `{"contentBlockIndex":0}`)
	} else {
		send("event", "contentBlockStart", `{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_calc","name":"`+agentTool+`"}}}`)
		for _, fragment := range agentSplit {
			input, _ := json.Marshal(fragment)
			send("event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"toolUse":{"input":`+string(input)+`}}}`)
		}
		send("event", "contentBlockStop", `{"contentBlockIndex":0}`)
	}
	send("event", "messageStop", `{"stopReason":"`+stop+`"}`)
	send("event", "metadata", fmt.Sprintf(`{"usage":{"inputTokens":%d,"outputTokens":%d,"totalTokens":%d},"metrics":{"latencyMs":12}}`, usage.in, usage.out, usage.in+usage.out))
}

// countingFake is what the Anthropic and Ollama fakes share: their server,
// the requests they took by model, and the models of the requests a
// client abandoned.
type countingFake struct {
	srv *httptest.Server

	mu    sync.Mutex
	calls map[string]int
	// canceled is told the model of each request the client abandoned.
	canceled chan string
}

// start serves serve until the test ends.
func (f *countingFake) start(t *testing.T, serve http.HandlerFunc) {
	f.calls, f.canceled = map[string]int{}, make(chan string, 16)
	f.srv = httptest.NewServer(serve)
	t.Cleanup(f.srv.Close)
}

// count counts a request for model and returns how many there were.
func (f *countingFake) count(model string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[model]++
	return f.calls[model]
}
