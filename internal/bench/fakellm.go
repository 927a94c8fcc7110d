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
type Script struct {
	FirstDelay time.Duration
	Rate       float64 // tokens per second
	TokenSize  int     // bytes per token, at least the length of its marker
	Tokens     int
}

func (s Script) interval() time.Duration {
	if s.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / s.Rate)
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
	started atomic.Int64   // when the provider was called
}

// add creates the record of a new answer of n tokens and returns its id.
func (s *streams) add(n int) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stream{id: len(s.byID), emitted: make([]atomic.Int64, n)}
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

// play emits the tokens of the stream named in text on schedule: the i-th at
// FirstDelay + i/Rate after the call, whatever emit costs, so a slow consumer
// cannot slow the model down and hide its own latency.
func (f *fakeLLM) play(ctx context.Context, text string, emit func(string) error) (int, error) {
	id, ok := streamOf(text)
	st := f.streams.get(id)
	if !ok || st == nil {
		return 0, fmt.Errorf("fake LLM: no bench stream in %q", text)
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

// Stream implements orchestrator.Provider.
func (p provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	last := ""
	for _, m := range prompt.Messages {
		if m.Role == chat.RoleUser {
			last = m.Text
		}
	}
	n, err := p.llm.play(ctx, last, func(s string) error { return emit(chat.TextPart(s)) })
	if err != nil {
		return chat.Final{}, err
	}
	return chat.Final{Usage: chat.Usage{InputTokens: 3, OutputTokens: n, TotalTokens: 3 + n}, StopReason: "end_turn"}, nil
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
