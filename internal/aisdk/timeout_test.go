package aisdk

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

// stalled answers nothing until its caller's context ends, as the
// resolvers do when NATS stalls.
type stalled struct{}

func (stalled) Ask(ctx context.Context, _ model.GetLlmResponseInput) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}
func (stalled) Cancel(ctx context.Context, _, _ string) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}
func (stalled) Pending(ctx context.Context, _ string) (string, *uint64, error) {
	<-ctx.Done()
	return "", nil, ctx.Err()
}

// attachedHub attaches every subscription at once.
type attachedHub struct{}

func (attachedHub) Subscribe(_ context.Context, _ string, _ *uint64, sink hub.Sink) (*hub.Subscriber, error) {
	sink.(hub.Attacher).Attached()
	return nil, nil
}

// Every endpoint whose steps before the stream stall answers, once
// --operation-timeout has passed, what GraphQL answers: 504
// OPERATION_TIMEOUT.
func TestOperationTimeout(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	streams := stream.NewAnswers(stream.AnswersConfig{}, stream.NewPolicy(stream.Config{}, nil, log), attachedHub{})
	s := NewServer(streams, stalled{}, 50*time.Millisecond, log)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat", s.Chat)
	mux.HandleFunc("GET /api/chat/{id}/stream", s.Resume)
	mux.HandleFunc("POST /api/chat/{id}/stop", s.Stop)
	chatBody := `{"id":"s1","trigger":"submit-message","messages":[{"id":"u","role":"user","parts":[{"type":"text","text":"hi"}]}]}`
	for _, tt := range []struct{ name, method, path, body string }{
		{"ask", "POST", "/api/chat", chatBody},
		{"resume", "GET", "/api/chat/s1/stream", ""},
		{"stop", "POST", "/api/chat/s1/stop", "{}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The client leaves long after the server should have
			// answered: a server without the bound answers only then, and
			// not 504.
			ctx, cancel := context.WithCancel(context.Background())
			defer time.AfterFunc(10*time.Second, cancel).Stop()
			defer cancel()
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequestWithContext(ctx, tt.method, tt.path, strings.NewReader(tt.body)))
			checkTimeout(t, w.Result())
		})
	}
}

func checkTimeout(t *testing.T, resp *http.Response) {
	t.Helper()
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
}
