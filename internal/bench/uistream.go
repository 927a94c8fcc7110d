package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// This file owns the bench's dialects of the UI toolkits' protocols, the AI
// SDK's UI message stream (POST /api/chat) and AG-UI (POST /api/agui). In
// both the answer streams in the response to the ask: there is nothing to
// subscribe to before it. A subscriber waits for its session's ask; the
// first one's stream is the ask's response, the others follow the answer in
// flight as a reloaded page does (GET /api/chat/{id}/stream; AG-UI: the run
// posted again without a question), from its START.

// Dialect names of the UI toolkits' protocols.
const (
	DialectAISDK = "aisdk"
	DialectAGUI  = "agui"
)

type uiDialect struct {
	kind   string // DialectAISDK or DialectAGUI
	base   string // http://host:port
	apiKey string
	model  string
	client *http.Client

	mu      sync.Mutex
	waiting map[string][]*uiSubscriber // by session, until its ask
}

func newUIDialect(kind, graphqlURL, apiKey, model string) *uiDialect {
	return &uiDialect{kind: kind, base: strings.TrimSuffix(graphqlURL, "/graphql"), apiKey: apiKey, model: model,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}, waiting: map[string][]*uiSubscriber{}}
}

// Subscribe registers a subscriber for session's ask; it opens nothing.
func (d *uiDialect) Subscribe(_ context.Context, session string) (Subscriber, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &uiSubscriber{kind: d.kind, ctx: ctx, cancel: cancel, started: make(chan struct{})}
	d.mu.Lock()
	d.waiting[session] = append(d.waiting[session], s)
	d.mu.Unlock()
	return s, nil
}

// ask asks in session with the first subscriber's request, and has the
// others follow the answer; it returns once every stream has its headers.
func (d *uiDialect) ask(ctx context.Context, session, requestID, question string) error {
	d.mu.Lock()
	subs := d.waiting[session]
	delete(d.waiting, session)
	d.mu.Unlock()
	if len(subs) == 0 {
		return fmt.Errorf("%s: no subscriber for %s", d.kind, session)
	}
	var first, follow *http.Request
	var err error
	switch d.kind {
	case DialectAISDK:
		msg := map[string]any{"id": requestID, "role": "user", "parts": []any{map[string]string{"type": "text", "text": question}}}
		first, err = d.request(subs[0].ctx, http.MethodPost, "/api/chat", map[string]any{"id": session, "messages": []any{msg}, "locale": "en", "model": d.model})
		follow, _ = d.request(ctx, http.MethodGet, "/api/chat/"+session+"/stream", nil)
	default:
		props := map[string]string{"locale": "en", "model": d.model}
		msg := map[string]any{"id": requestID, "role": "user", "content": question}
		first, err = d.request(subs[0].ctx, http.MethodPost, "/api/agui", map[string]any{"threadId": session, "runId": requestID, "messages": []any{msg}, "forwardedProps": props})
		follow, _ = d.request(ctx, http.MethodPost, "/api/agui", map[string]any{"threadId": session, "runId": requestID, "messages": []any{}, "forwardedProps": props})
	}
	if err != nil {
		return err
	}
	if err := subs[0].open(d.client, first, requestID); err != nil {
		return err
	}
	for _, s := range subs[1:] {
		if err := s.open(d.client, follow.Clone(s.ctx), requestID); err != nil {
			return err
		}
	}
	return nil
}

func (d *uiDialect) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		// Clone shares the body: each follower's copy reads it anew.
		b, _ := json.Marshal(body)
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	if d.apiKey != "" {
		req.Header.Set("X-Api-Key", d.apiKey)
	}
	return req, nil
}

// uiSubscriber reads one answer's stream once its session was asked in.
type uiSubscriber struct {
	kind    string
	ctx     context.Context // the stream's; Close cancels it
	cancel  context.CancelFunc
	started chan struct{} // closed once body is set (or opening failed)
	once    sync.Once

	request string
	body    io.ReadCloser
	r       *bufio.Reader
	err     error
	index   int // the next event's index: these protocols carry none
}

// open sends req and hands its stream to Next.
func (s *uiSubscriber) open(client *http.Client, req *http.Request, requestID string) error {
	if req.GetBody != nil {
		req.Body, _ = req.GetBody()
	}
	resp, err := client.Do(req)
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %w", s.kind, err)
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		err = fmt.Errorf("%s: HTTP %d %s", s.kind, resp.StatusCode, msg)
	}
	taken := false
	s.once.Do(func() {
		taken = true
		s.request, s.err = requestID, err
		if err == nil {
			s.body, s.r = resp.Body, bufio.NewReaderSize(resp.Body, 64<<10)
		}
		close(s.started)
	})
	if !taken && err == nil {
		resp.Body.Close() // closed before its stream came
	}
	return err
}

// Next waits for the stream, then reads one server-sent event and returns
// what it is of the answer, as the GraphQL events: START, DELTA, END,
// ERROR, CANCELLED, indexed in the order they came.
func (s *uiSubscriber) Next() ([]Event, error) {
	select {
	case <-s.started:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	if s.err != nil {
		return nil, s.err
	}
	var data []byte
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errors.New("sse line longer than 64 KiB")
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				data = append(data, bytes.TrimPrefix(d, []byte(" "))...)
			}
			continue
		}
		if data == nil {
			continue
		}
		if string(data) == "[DONE]" {
			return nil, io.EOF
		}
		return s.events(data)
	}
}

// events maps one chunk (AI SDK) or event (AG-UI) to the answer's events.
func (s *uiSubscriber) events(data []byte) ([]Event, error) {
	var c struct {
		Type    string `json:"type"`
		Delta   string `json:"delta"`
		Outcome *struct {
			Type string `json:"type"`
		} `json:"outcome"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("invalid %s event %q: %w", s.kind, data, err)
	}
	var typ string
	switch c.Type {
	case "start":
		typ = "START"
	case "STEP_STARTED":
		if s.index == 0 {
			typ = "START"
		}
	case "text-delta", "TEXT_MESSAGE_CONTENT":
		typ = "DELTA"
	case "finish":
		typ = "END"
	case "RUN_FINISHED":
		typ = "END"
		if c.Outcome != nil && c.Outcome.Type == "cancelled" {
			typ = "CANCELLED"
		}
	case "error", "RUN_ERROR":
		typ = "ERROR"
	case "abort":
		typ = "CANCELLED"
	}
	if typ == "" {
		return nil, nil
	}
	idx := s.index
	s.index++
	return []Event{{Type: typ, RequestID: s.request, Index: &idx, Message: c.Delta}}, nil
}

func (s *uiSubscriber) Close() error {
	s.cancel()
	s.once.Do(func() { s.err = errors.New("closed"); close(s.started) })
	if s.body != nil {
		return s.body.Close()
	}
	return nil
}
