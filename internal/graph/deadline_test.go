package graph

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

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
)

// stuckStore never answers a conversation read before its context ends,
// and says when it ended.
type stuckStore struct {
	Store
	started chan struct{}
	ended   chan error
}

func (s *stuckStore) Conversation(ctx context.Context, session string) (chat.Conversation, error) {
	s.started <- struct{}{}
	<-ctx.Done()
	s.ended <- ctx.Err()
	return chat.Conversation{}, ctx.Err()
}

func stuckSchema() (graphql.ExecutableSchema, *stuckStore) {
	st := &stuckStore{started: make(chan struct{}, 1), ended: make(chan error, 1)}
	r := &Resolver{Store: st, Sessions: allowAll{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return NewExecutableSchema(Config{Resolvers: r}), st
}

var alice = &auth.Principal{ID: "alice"}

const stuckQuery = `{ conversation(sessionId: "s-1") { sessionId } }`

// A query that runs past --operation-timeout ends with OPERATION_TIMEOUT on
// the transports that run operations themselves (WebSocket, SSE).
func TestOperationsEndAtTheirDeadline(t *testing.T) {
	es, st := stuckSchema()
	ops := NewOperations(es, Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200, MaxFields: 500, OperationTimeout: 50 * time.Millisecond}, allowAll{}, slog.New(slog.DiscardHandler))
	ctx := auth.WithPrincipal(context.Background(), alice)
	op, errs := ops.Prepare(ctx, &graphql.RawParams{Query: stuckQuery})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	resp := ops.Execute(ctx, op)
	select {
	case err := <-st.ended:
		if err != context.DeadlineExceeded {
			t.Fatalf("the resolver's context ended with %v, want its deadline", err)
		}
	default:
		t.Fatalf("the resolver did not run: %v", resp.Errors)
	}
	if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != chat.CodeOperationTimeout {
		t.Fatalf("errors %v, want OPERATION_TIMEOUT", resp.Errors)
	}
}

// Over HTTP POST the same deadline holds, and a client that leaves ends its
// operation's work at once.
func TestPostOperationsEndAtTheirDeadlineOrWhenTheClientLeaves(t *testing.T) {
	serve := func(timeout time.Duration) (*httptest.Server, *stuckStore) {
		es, st := stuckSchema()
		srv := handler.New(es)
		srv.AddTransport(transport.POST{})
		for _, ext := range (Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200, MaxFields: 500, OperationTimeout: timeout}).Extensions() {
			srv.Use(ext)
		}
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			srv.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), alice)))
		}))
		t.Cleanup(ts.Close)
		return ts, st
	}
	post := func(ctx context.Context, url string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"query":`+strconvQuote(stuckQuery)+`}`))
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}

	ts, st := serve(50 * time.Millisecond)
	resp, err := post(context.Background(), ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Errors []struct {
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if len(st.ended) == 0 || <-st.ended != context.DeadlineExceeded || len(out.Errors) != 1 || out.Errors[0].Extensions["code"] != chat.CodeOperationTimeout {
		t.Fatalf("errors %+v, want OPERATION_TIMEOUT", out.Errors)
	}

	ts, st = serve(time.Hour)
	ctx, leave := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := post(ctx, ts.URL); err == nil {
			resp.Body.Close()
		}
	}()
	<-st.started
	leave()
	<-done
	select {
	case err := <-st.ended:
		if err != context.Canceled {
			t.Fatalf("the resolver's context ended with %v, want cancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client left and the resolver is still running")
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
