package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Script is how the fake LLM answers: after FirstDelay the first token, then
// one token every 1/Rate seconds until Tokens tokens of TokenSize bytes.
// With AgentSteps, the answer is an agent run: that many model calls that
// each call a tool after FirstDelay, then the text.
type Script struct {
	FirstDelay time.Duration
	Rate       float64 // tokens per second
	TokenSize  int     // bytes per token, at least the length of its marker
	Tokens     int
	AgentSteps int // tool steps before the text; 0 for a plain answer
}

func (s Script) interval() time.Duration {
	if s.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / s.Rate)
}

// modelTime is the model's own time in an answer, by the fake's schedule:
// a first-token delay per model call (each tool step's and the text's),
// then the text's tokens up to the last one. The fake never runs ahead of
// it; it runs behind it when it is starved of CPU, or when tokencast takes
// a part more slowly than the schedule allows (time tokencast added).
func (s Script) modelTime() time.Duration {
	return time.Duration(s.AgentSteps+1)*s.FirstDelay + time.Duration(max(s.Tokens-1, 0))*s.interval()
}

// clock is the one monotonic clock of a run: the fake LLM stamps emissions
// and the clients stamp receipts with it, so their difference is a latency.
type clock struct{ start time.Time }

func newClock() clock { return clock{start: time.Now()} }

// now is nanoseconds since the run began (monotonic).
func (c clock) now() int64 { return int64(time.Since(c.start)) }

// streams remembers when each token of each answer was emitted. Every token
// carries its stream and sequence number in its text, so a client maps what
// it received back to the emission time however the server coalesced it.
type streams struct {
	mu   sync.Mutex
	byID []*stream
}

type stream struct {
	id      int
	emitted []atomic.Int64 // emission time per sequence number, 0 = not yet
	started atomic.Int64   // when the provider was called for the text
	// steps are the model calls of the answer's tool steps, in order.
	steps []modelCall
}

// modelCall is when a model call of a tool step began, when its delay was
// over and it began to emit its tool call, and when it returned (0 = not
// yet), and the duration its tool's TOOL_RESULT reported in nanoseconds
// (-1 = none seen yet).
type modelCall struct{ began, emitting, ended, toolNanos atomic.Int64 }

// add creates the record of a new answer of n tokens after steps tool
// steps and returns it.
func (s *streams) add(n, steps int) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stream{id: len(s.byID), emitted: make([]atomic.Int64, n), steps: make([]modelCall, steps)}
	for i := range st.steps {
		st.steps[i].toolNanos.Store(-1)
	}
	s.byID = append(s.byID, st)
	return st
}

func (s *streams) get(id int) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 0 || id >= len(s.byID) {
		return nil
	}
	return s.byID[id]
}

// questionPrefix starts every question the bench asks; the stream id follows.
const questionPrefix = "tokencast-bench stream "

func question(streamID int) string { return questionPrefix + strconv.Itoa(streamID) }

// streamOf finds the stream id in the last question of a conversation.
func streamOf(text string) (int, bool) {
	i := strings.LastIndex(text, questionPrefix)
	if i < 0 {
		return 0, false
	}
	rest := text[i+len(questionPrefix):]
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

// tokenText is token seq of stream id: "~<id hex>.<seq hex>" padded with '-'
// to size bytes, ending in a space so coalesced tokens stay apart.
func tokenText(id, seq, size int) string {
	b := make([]byte, 0, max(size, 2+2*strconv.IntSize/4+1))
	b = append(b, '~')
	b = strconv.AppendInt(b, int64(id), 16)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seq), 16)
	for len(b) < size-1 {
		b = append(b, '-')
	}
	return string(append(b, ' '))
}

// parseTokens calls fn for every token marker in text, in order.
func parseTokens(text string, fn func(id, seq int)) {
	for {
		i := strings.IndexByte(text, '~')
		if i < 0 {
			return
		}
		text = text[i+1:]
		id, n := hexPrefix(text)
		if n == 0 || n >= len(text) || text[n] != '.' {
			continue
		}
		text = text[n+1:]
		seq, m := hexPrefix(text)
		if m == 0 {
			continue
		}
		text = text[m:]
		fn(id, seq)
	}
}

func hexPrefix(s string) (int, int) {
	v, n := 0, 0
	for n < len(s) && n < 15 {
		c := s[n]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		default:
			return v, n
		}
		n++
	}
	return v, n
}

// fakeLLM emits scripted tokens and records when each left it.
type fakeLLM struct {
	script  Script
	clock   clock
	streams *streams
}

// stream is the record of the answer whose question is text.
func (f *fakeLLM) stream(text string) (*stream, error) {
	id, ok := streamOf(text)
	st := f.streams.get(id)
	if !ok || st == nil {
		return nil, fmt.Errorf("fake LLM: no bench stream in %q", text)
	}
	return st, nil
}

// play emits the tokens of the stream named in text on schedule: the i-th at
// FirstDelay + i/Rate after the call, whatever emit costs, so a slow consumer
// cannot slow the model down and hide its own latency.
func (f *fakeLLM) play(ctx context.Context, text string, emit func(string) error) (int, error) {
	st, err := f.stream(text)
	if err != nil {
		return 0, err
	}
	st.started.Store(f.clock.now())
	begin := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for seq := range st.emitted {
		due := f.script.FirstDelay + time.Duration(seq)*f.script.interval()
		if wait := time.Until(begin.Add(due)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return seq, ctx.Err()
			case <-timer.C:
			}
		}
		st.emitted[seq].Store(f.clock.now())
		if err := emit(tokenText(st.id, seq, f.script.TokenSize)); err != nil {
			return seq, err
		}
	}
	return len(st.emitted), nil
}

// provider is the fake LLM as an orchestrator.Provider in the in-process server.
type provider struct{ llm *fakeLLM }

// benchTool is the tool each step of an agent answer calls: the built-in
// calculator, quick and with no side effects, so the step costs what
// tokencast adds and little else.
const benchTool = "calculator"

// Stream implements orchestrator.Provider: the answer's tool steps first,
// one per call, then its text.
func (p provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	question, done := runSoFar(prompt)
	if done < p.llm.script.AgentSteps {
		return p.toolStep(ctx, question, done+1, emit)
	}
	n, err := p.llm.play(ctx, question, func(s string) error { return emit(chat.TextPart(s)) })
	if err != nil {
		return chat.Final{}, err
	}
	return chat.Final{Usage: chat.Usage{InputTokens: 3, OutputTokens: n, TotalTokens: 3 + n}, StopReason: "end_turn"}, nil
}

// runSoFar is the bench's question, the last message a person wrote (tool
// results are user messages with blocks), and how many model calls of its
// answer came before this one.
func runSoFar(prompt chat.Prompt) (string, int) {
	calls := 0
	for i := len(prompt.Messages) - 1; i >= 0; i-- {
		switch m := prompt.Messages[i]; {
		case m.Role == chat.RoleUser && len(m.Blocks) == 0:
			return m.Text, calls
		case m.Role == chat.RoleAssistant:
			calls++
		}
	}
	return "", calls
}

// toolStep is tool step number step (from 1) of the answer to question:
// after the first-token delay, one call of the calculator (id "b<step>",
// unique in the answer), and the model stops for its result.
func (p provider) toolStep(ctx context.Context, question string, step int, emit func(chat.Part) error) (chat.Final, error) {
	st, err := p.llm.stream(question)
	if err != nil {
		return chat.Final{}, err
	}
	call := &st.steps[step-1]
	call.began.Store(p.llm.clock.now())
	timer := time.NewTimer(p.llm.script.FirstDelay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return chat.Final{}, ctx.Err()
	case <-timer.C:
	}
	call.emitting.Store(p.llm.clock.now())
	id := "b" + strconv.Itoa(step)
	for _, part := range []chat.Part{
		{Kind: chat.PartToolStart, CallID: id, Name: benchTool},
		{Kind: chat.PartToolDelta, CallID: id, Text: `{"expression": "` + strconv.Itoa(step) + `*7"}`},
		{Kind: chat.PartToolEnd, CallID: id},
	} {
		if err := emit(part); err != nil {
			return chat.Final{}, err
		}
	}
	call.ended.Store(p.llm.clock.now())
	return chat.Final{Usage: chat.Usage{InputTokens: 3, OutputTokens: 3, TotalTokens: 6}, StopReason: "tool_use"}, nil
}

// openAIHandler serves the fake LLM as an OpenAI-compatible
// POST /v1/chat/completions with "stream": true (SSE chunks, a usage chunk,
// then [DONE]), for a tokencast started elsewhere (--target) whose openai
// provider the operator points at it.
func (f *fakeLLM) openAIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Stream   bool   `json:"stream"`
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"message":"bad JSON","type":"invalid_request_error"}}`, http.StatusBadRequest)
			return
		}
		last := ""
		for _, m := range req.Messages {
			if m.Role == "user" {
				last = contentText(m.Content)
			}
		}
		if !req.Stream {
			http.Error(w, `{"error":{"message":"the bench fake only streams","type":"invalid_request_error"}}`, http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriter(w)
		chunk := func(v any) error {
			data, _ := json.Marshal(v)
			bw.WriteString("data: ")
			bw.Write(data)
			bw.WriteString("\n\n")
			if err := bw.Flush(); err != nil {
				return err
			}
			return rc.Flush()
		}
		type delta struct {
			Content string `json:"content,omitempty"`
			Role    string `json:"role,omitempty"`
		}
		type choice struct {
			Index        int     `json:"index"`
			Delta        delta   `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		}
		base := map[string]any{"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": req.Model}
		with := func(k string, v any) map[string]any {
			m := map[string]any{k: v}
			for bk, bv := range base {
				m[bk] = bv
			}
			return m
		}
		n, err := f.play(r.Context(), last, func(text string) error {
			return chunk(with("choices", []choice{{Delta: delta{Content: text}}}))
		})
		if err != nil {
			return
		}
		stop := "stop"
		_ = chunk(with("choices", []choice{{FinishReason: &stop}}))
		_ = chunk(with("usage", map[string]int{"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}))
		bw.WriteString("data: [DONE]\n\n")
		_ = bw.Flush()
		_ = rc.Flush()
	})
	return mux
}

// contentText reads an OpenAI message content: a string or a list of parts.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}

// toolResult notes the durationMs of the TOOL_RESULT of call id ("b<step>")
// of this answer; every subscriber of the session sees the same.
func (st *stream) toolResult(id string, millis float64) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "b"))
	if err != nil || n < 1 || n > len(st.steps) || !strings.HasPrefix(id, "b") {
		return
	}
	st.steps[n-1].toolNanos.Store(int64(millis * 1e6))
}
