package main

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// ollamaFake speaks Ollama's native chat stream (newline-delimited JSON,
// the counts in the last line's prompt_eval_count and eval_count); what it
// does depends on the model a request names.
type ollamaFake struct{ countingFake }

// ollamaUsage is what the fake reports for an answer.
var ollamaUsage = wireUsage{in: 19, out: 4}

func newOllamaFake(t *testing.T) *ollamaFake {
	f := &ollamaFake{}
	f.start(t, f.serve)
	return f
}

// env points the server's ollama provider at the fake, as OLLAMA_HOST
// does the Ollama CLI.
func (f *ollamaFake) env() map[string]string {
	return map[string]string{"OLLAMA_HOST": f.srv.URL}
}

func (f *ollamaFake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if r.URL.Path != "/api/chat" || r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil || !req.Stream {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	n := f.count(req.Model)
	if req.Model == "busy-once" && n == 1 {
		// What Ollama answers when its queue is full.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	line := func(v map[string]any) {
		v["model"], v["created_at"] = req.Model, time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(v)
		_, _ = w.Write(append(b, '\n'))
		w.(http.Flusher).Flush()
	}
	content := func(text string) {
		line(map[string]any{"message": map[string]any{"role": "assistant", "content": text}, "done": false})
	}
	done := func(u wireUsage) {
		line(map[string]any{"message": map[string]any{"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
			"total_duration": 1000, "prompt_eval_count": u.in, "eval_count": u.out})
	}

	switch req.Model {
	case "agent":
		if answer := agentReply(body, `"role":"tool"`); answer != "" {
			content(answer)
			done(agentAnswerUsage)
			return
		}
		// Ollama sends a call whole, its arguments an object.
		line(map[string]any{"message": map[string]any{"role": "assistant", "content": "", "tool_calls": []any{
			map[string]any{"function": map[string]any{"name": agentTool, "arguments": json.RawMessage(agentInput)}},
		}}, "done": false})
		done(agentCallUsage)
		return
	case "pause-mid":
		content(fakeAnswer[0])
		content(fakeAnswer[1])
		select {
		case <-r.Context().Done():
			f.canceled <- req.Model
			return
		case <-time.After(pauseFor):
		}
		content(fakeAnswer[2])
		content(fakeAnswer[3])
	case "fail-mid":
		// A runner that dies mid-answer: an error line in a 200 stream.
		content(fakeAnswer[0])
		content(fakeAnswer[1])
		_, _ = io.WriteString(w, `{"error":"RAW-OLLAMA-TEXT: model runner has unexpectedly stopped"}`+"\n")
		return
	default:
		for _, tok := range fakeAnswer {
			content(tok)
		}
	}
	done(ollamaUsage)
}
