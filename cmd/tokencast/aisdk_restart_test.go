package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/provider/demo"
)

// uiPart is a part of the UI message a client builds.
type uiPart struct {
	Type, ID, Text, Output string
}

// uiMessageOf builds the UI message of a stream's chunks as the `ai`
// package's processUIMessageStream does: start-step adds a step-start
// part, reset-step drops the parts after the last one, a delta goes to its
// open part, a tool's result to its part wherever it is.
func uiMessageOf(t *testing.T, chunks []uiChunk) []uiPart {
	t.Helper()
	var parts []uiPart
	open := map[string]int{}
	for _, c := range chunks {
		switch c.Type {
		case "start-step":
			parts = append(parts, uiPart{Type: "step-start"})
		case "reset-step":
			i := len(parts)
			for i > 0 && parts[i-1].Type != "step-start" {
				i--
			}
			parts, open = parts[:i], map[string]int{}
		case "text-start", "reasoning-start":
			kind := strings.TrimSuffix(c.Type, "-start")
			open[kind+c.ID] = len(parts)
			parts = append(parts, uiPart{Type: kind, ID: c.ID})
		case "text-delta", "reasoning-delta":
			i, ok := open[strings.TrimSuffix(c.Type, "-delta")+c.ID]
			if !ok {
				t.Fatalf("%s of part %q that is not open", c.Type, c.ID)
			}
			parts[i].Text += c.Delta
		case "text-end", "reasoning-end":
			delete(open, strings.TrimSuffix(c.Type, "-end")+c.ID)
		case "tool-input-start":
			parts = append(parts, uiPart{Type: "tool-" + c.ToolName, ID: c.ToolCallID})
		case "tool-input-available":
			step := len(parts)
			for step > 0 && parts[step-1].Type != "step-start" {
				step--
			}
			found := false
			for i := step; i < len(parts); i++ {
				if parts[i].ID == c.ToolCallID {
					parts[i].Text, found = string(c.Input), true
				}
			}
			if !found {
				parts = append(parts, uiPart{Type: "tool-" + c.ToolName, ID: c.ToolCallID, Text: string(c.Input)})
			}
		case "tool-output-available", "tool-output-error":
			for i := len(parts) - 1; i >= 0; i-- {
				if parts[i].ID == c.ToolCallID && strings.HasPrefix(parts[i].Type, "tool-") {
					parts[i].Output = string(c.Output) + c.ErrorText
					break
				}
				if i == 0 {
					t.Fatalf("a result of %s, which the message does not hold", c.ToolCallID)
				}
			}
		}
	}
	return parts
}

// A worker killed mid-run: the AI SDK stream that showed the first step
// shows the new attempt without a second copy of it. The client's message
// holds the step once (its reasoning, both tool calls with their results,
// the one in flight as the new attempt ran it) and the new attempt's
// answer.
func TestAISDKWorkerKilledMidRunShowsEachStepOnce(t *testing.T) {
	cfg, calls, release := hangingClock(t)
	s, natsAddr := apiWithListeningNATS(t, "--config", cfg)
	w1 := spawn(t, workerArgs(natsAddr, "--config", cfg)...)
	resp := uiRequest(t, s, http.MethodPost, "/api/chat", "", uiChat("ai-crash", demo.AgentTrigger+" survive"), nil)
	defer resp.Body.Close()
	seen, done := readChunks(t, resp, func(c uiChunk) bool {
		return c.Type == "tool-output-available" && strings.Contains(string(c.Output), "42")
	})
	if done {
		t.Fatalf("the run ended before the crash: %s", uiTypes(seen))
	}
	for deadline := time.Now().Add(30 * time.Second); calls("clock") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the clock was called %d times; worker:\n%s", calls("clock"), w1.out.String())
		}
	}
	w1.kill()
	spawn(t, workerArgs(natsAddr, "--config", cfg)...)
	close(release)
	rest, done := readChunks(t, resp, nil)
	if !done {
		t.Fatalf("no [DONE]: %s", uiTypes(rest))
	}
	chunks := append(seen, rest...)
	msg := uiMessageOf(t, chunks)
	var kinds []string
	var reasoning, text string
	for _, p := range msg {
		kinds = append(kinds, p.Type)
		switch {
		case p.Type == "reasoning":
			reasoning += p.Text
		case p.Type == "text":
			text += p.Text
		case strings.HasPrefix(p.Type, "tool-"):
			kinds[len(kinds)-1] = fmt.Sprintf("%s=%s", p.Type, p.Output)
		}
	}
	got := strings.Join(kinds, " ")
	if want := `step-start reasoning tool-calculator="42" tool-clock="noon" step-start text`; got != want {
		t.Fatalf("the message holds\n%s\nwant\n%s\nchunks %s", got, want, uiTypes(chunks))
	}
	if !strings.Contains(reasoning, "calculator") || !strings.Contains(text, "The clock says noon.") {
		t.Fatalf("reasoning %q, text %q", reasoning, text)
	}
	if last := rest[len(rest)-1]; last.Type != "finish" || last.MessageMetadata == nil || last.MessageMetadata.Status != "COMPLETE" {
		t.Fatalf("the stream ends with %+v", last)
	}
}
