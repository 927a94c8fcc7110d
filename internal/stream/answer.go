package stream

import (
	"context"
	"errors"
	"net/http"
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

// AnswerConfig bounds an answer's stream.
type AnswerConfig struct {
	// WriteTimeout bounds each write to the client.
	WriteTimeout time.Duration
	// KeepAlive is how often an idle stream gets a comment, so proxies
	// keep it (default 15 s).
	KeepAlive time.Duration
	// Closing is closed when the server shuts down: the stream ends and
	// the client resumes elsewhere.
	Closing <-chan struct{}
}

// ServeAnswer writes the events of request (and a RESYNC, which ends it)
// from f to w through enc until the answer is over; the response's headers
// must be written already. It returns why the stream ended early, nil when
// the answer ended.
func (p *Policy) ServeAnswer(ctx context.Context, w http.ResponseWriter, pr *auth.Principal, f *Follower, request string, enc Encoder, cfg AnswerConfig) error {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(nil); err != nil {
		return err
	}
	expired := make(chan struct{})
	if t := p.Expire(pr, func() { close(expired) }); t != nil {
		defer t.Stop()
	}
	tick := time.NewTicker(cfg.KeepAlive)
	defer tick.Stop()
	var buf []byte
	for {
		ev, err := f.wait(ctx, tick.C, expired, cfg.Closing)
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
