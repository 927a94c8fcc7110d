package stream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns writing one answer to an HTTP response as server-sent
// events, in the frames of a UI toolkit's protocol: the events of that
// answer only, a write deadline, keep-alive comments, and an end when the
// answer ends, the client leaves, the token expires, the reader falls too
// far behind or the server shuts down.

// Encoder frames an answer's events in one protocol. An encoder keeps the
// state of one answer (which parts are open) and is used by one goroutine.
type Encoder interface {
	// Event appends ev's frames to b; done says the answer is over and
	// the stream ends with what was appended.
	Event(b []byte, ev *chat.Event) (out []byte, done bool)
	// Fail appends the frames that end the stream early with an error a
	// client may show: a stable code and a safe message.
	Fail(b []byte, code, message string) []byte
}

// AnswersConfig bounds the answer streams of one protocol.
type AnswersConfig struct {
	// QueueSize bounds the events waiting for a slow client (default 256).
	QueueSize int
	// WriteTimeout bounds each write to the client (default 10 s).
	WriteTimeout time.Duration
	// KeepAlive is how often an idle stream gets a comment, so proxies
	// keep it (default 15 s).
	KeepAlive time.Duration
	// OnStream is called with +1 when a stream opens and -1 when it ends.
	OnStream func(delta int)
}

// Answers is what the endpoints of a UI toolkit's protocol share: they
// follow a session through the hub and write one answer per response,
// held to the policy, until the server shuts down.
type Answers struct {
	cfg     AnswersConfig
	policy  *Policy
	hub     Hub
	closing chan struct{} // closed at shutdown: every stream ends
	once    sync.Once
}

// NewAnswers returns the answer streams of one protocol.
func NewAnswers(cfg AnswersConfig, policy *Policy, h Hub) *Answers {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	return &Answers{cfg: cfg, policy: policy, hub: h, closing: make(chan struct{})}
}

// Shutdown ends every stream; clients resume on another node.
func (a *Answers) Shutdown() { a.once.Do(func() { close(a.closing) }) }

// Follow follows a session (see Follow) with the configured queue.
func (a *Answers) Follow(ctx context.Context, session string, after *uint64) *Follower {
	return Follow(ctx, a.hub, session, after, a.cfg.QueueSize)
}

// Admit takes the slots of a stream whose caller r's context holds (the
// gateway authenticated it), as every stream takes them. A refusal is a
// *chat.Error to show the client.
func (a *Answers) Admit(r *http.Request) (*Lease, error) {
	ctx := r.Context()
	lease := a.policy.Lease(auth.ClientAddrFrom(ctx), r.Header.Get("Origin"))
	if err := lease.Admit(ctx, auth.FromContext(ctx)); err != nil {
		if errors.Is(err, ErrNodeFull) {
			return nil, &chat.Error{Code: chat.CodeUnavailable, Message: "too many connections on this node"}
		}
		return nil, &chat.Error{Code: chat.CodeTooManyConnections, Message: "too many connections for this principal"}
	}
	return lease, nil
}

// AppendData appends v as one server-sent event's data line of JSON.
func AppendData(b []byte, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return b // the protocols' events are plain values
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// WriteHeader starts a response as an event stream.
func WriteHeader(w http.ResponseWriter, header http.Header) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	for k, v := range header {
		h[k] = v
	}
	w.WriteHeader(http.StatusOK)
}

// Serve writes first, then the events of request (and a RESYNC, which ends
// it) from f to w through enc, until the answer is over; the response's
// headers must be written already. The stream lasts no longer than the
// token of its caller, r's principal. It returns why the stream ended
// early, nil when the answer ended.
func (a *Answers) Serve(r *http.Request, w http.ResponseWriter, f *Follower, first []byte, request string, enc Encoder) error {
	if a.cfg.OnStream != nil {
		a.cfg.OnStream(1)
		defer a.cfg.OnStream(-1)
	}
	ctx, cfg := r.Context(), a.cfg
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(first); err != nil {
		return err
	}
	expired := make(chan struct{})
	if t := a.policy.Expire(auth.FromContext(ctx), func() { close(expired) }); t != nil {
		defer t.Stop()
	}
	tick := time.NewTicker(cfg.KeepAlive)
	defer tick.Stop()
	var buf []byte
	for {
		ev, err := f.wait(ctx, tick.C, expired, a.closing)
		switch {
		case errors.Is(err, errIdle):
			if err := write([]byte(":\n\n")); err != nil {
				return err
			}
			continue
		case errors.Is(err, errExpired):
			_ = write(enc.Fail(buf[:0], chat.CodeUnauthenticated, "the token expired: authenticate again"))
			return err
		case errors.Is(err, ErrSlow), errors.Is(err, errClosing):
			_ = write(enc.Fail(buf[:0], chat.CodeUnavailable, "the stream was interrupted: resume it"))
			return err
		case err != nil:
			return err
		}
		if ev.RequestID != request && ev.Type != chat.EventResync {
			continue // another answer of the session, or a service's message
		}
		out, done := enc.Event(buf[:0], &ev)
		if len(out) > 0 {
			if err := write(out); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		buf = out
	}
}

var (
	errIdle    = errors.New("no event for a while")
	errExpired = errors.New("the token expired")
	errClosing = errors.New("the server is shutting down")
)
