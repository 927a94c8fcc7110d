package agui

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

// stalling answers at once, except stall, which answers nothing until its
// caller's context ends, as the resolvers do when NATS stalls.
type stalling struct{ stall string }

func (s stalling) wait(ctx context.Context, name string) error {
	if s.stall != name {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s stalling) Ask(ctx context.Context, _ model.GetLlmResponseInput) (string, error) {
	return "r1", s.wait(ctx, "ask")
}
func (s stalling) Approve(ctx context.Context, _, _, _ string, _ bool, _ string) error {
	return s.wait(ctx, "approve")
}
func (s stalling) Pending(ctx context.Context, _ string) (string, *uint64, error) {
	return "", nil, s.wait(ctx, "pending")
}
func (s stalling) Turns(ctx context.Context, _ string) ([]chat.Turn, error) {
	return nil, s.wait(ctx, "turns")
}
func (s stalling) EventAt(ctx context.Context, _ string, _ uint64) (*chat.Event, error) {
	return nil, s.wait(ctx, "event")
}

// attachedHub attaches every subscription at once.
type attachedHub struct{}

func (attachedHub) Subscribe(_ context.Context, _ string, _ *uint64, sink hub.Sink) (*hub.Subscriber, error) {
	sink.(hub.Attacher).Attached()
	return nil, nil
}

// A run whose steps before the stream stall (reading the thread, asking,
// answering an interrupt, finding the last event) answers, once
// --operation-timeout has passed, what GraphQL answers: 504
// OPERATION_TIMEOUT.
func TestOperationTimeout(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	streams := stream.NewAnswers(stream.AnswersConfig{}, stream.NewPolicy(stream.Config{}, nil, log), attachedHub{})
	question := `{"threadId":"t","runId":"r1","messages":[{"id":"m","role":"user","content":"hi"}]}`
	for _, tt := range []struct{ stall, body string }{
		{"turns", question},
		{"ask", question},
		{"pending", `{"threadId":"t","runId":"r2","messages":[]}`},
		{"approve", `{"threadId":"t","runId":"r2","messages":[],"resume":[{"interruptId":"r1:4:c1","status":"resolved"}]}`},
		{"event", `{"threadId":"t","runId":"r2","messages":[],"forwardedProps":{"lastEventId":"7"}}`},
	} {
		t.Run(tt.stall, func(t *testing.T) {
			s := NewServer(streams, stalling{tt.stall}, 50*time.Millisecond, log)
			// The client leaves long after the server should have
			// answered: a server without the bound answers only then, and
			// not 504.
			ctx, cancel := context.WithCancel(context.Background())
			defer time.AfterFunc(10*time.Second, cancel).Stop()
			defer cancel()
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "POST", "/api/agui", strings.NewReader(tt.body)))
			resp := w.Result()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Errors []struct {
					Extensions struct{ Code string } `json:"extensions"`
				} `json:"errors"`
			}
			_ = json.Unmarshal(raw, &body)
			if resp.StatusCode != http.StatusGatewayTimeout || len(body.Errors) != 1 || body.Errors[0].Extensions.Code != chat.CodeOperationTimeout {
				t.Fatalf("HTTP %d %s, want 504 %s", resp.StatusCode, raw, chat.CodeOperationTimeout)
			}
		})
	}
}
