package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
)

// panickyStore has a bug: reading a conversation panics.
type panickyStore struct{ Store }

func (panickyStore) Conversation(context.Context, string) (chat.Conversation, error) {
	panic("a bug in the store")
}

// panickyAuthorizer has a bug: checking a subscription's session panics.
type panickyAuthorizer struct{}

func (panickyAuthorizer) Authorize(context.Context, *auth.Principal, string) error {
	panic("a bug in the guard")
}

// A resolver that panics, on any transport that runs operations through
// Operations, answers INTERNAL with a safe message; the log has the panic,
// and the next operation runs.
func TestAPanicIsAnsweredInternalAndTheNextOperationRuns(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	es := NewExecutableSchema(Config{Resolvers: &Resolver{Store: panickyStore{}, Sessions: allowAll{}, Log: log}})
	ops := NewOperations(es, Limits{MaxDepth: 10, MaxAliases: 30, MaxComplexity: 200, MaxFields: 500}, panickyAuthorizer{}, log)
	ctx := auth.WithPrincipal(context.Background(), alice)

	run := func(query string) *graphql.Response {
		t.Helper()
		op, errs := ops.Prepare(ctx, &graphql.RawParams{Query: query})
		if len(errs) > 0 {
			return &graphql.Response{Errors: errs}
		}
		return ops.Execute(ctx, op)
	}
	for _, tc := range []struct{ name, query string }{
		{"in a resolver", `{ conversation(sessionId: "s-1") { sessionId } }`},
		{"while a subscription is prepared", `subscription { onSendMessage(sessionId: "s-1") { message } }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := run(tc.query)
			if len(resp.Errors) != 1 || chat.ErrorCode(resp.Errors[0]) != chat.CodeInternal ||
				resp.Errors[0].Extensions["code"] != chat.CodeInternal || resp.Errors[0].Message != "internal error" {
				t.Fatalf("errors %v, want one INTERNAL with a safe message", resp.Errors)
			}
			if resp := run(`{ __typename }`); len(resp.Errors) > 0 || string(resp.Data) != `{"__typename":"Query"}` {
				t.Fatalf("the next operation got %s %v", resp.Data, resp.Errors)
			}
		})
	}
	if !strings.Contains(logged.String(), "a bug in the store") || !strings.Contains(logged.String(), "a bug in the guard") {
		t.Fatalf("the panics are not in the log:\n%s", logged.String())
	}
}

// What a client is shown of an error: its code and message when it was made
// for clients, gqlgen's own errors as they are, and for anything else a code
// and a fixed message, never the error's own text.
func TestErrorsAreShownByCodeNeverByTheirText(t *testing.T) {
	var logged bytes.Buffer
	present := presentError(slog.New(slog.NewTextHandler(&logged, nil)))
	ctx := context.Background()
	secret := errors.New("dial tcp 10.0.0.7:4222: connection refused")
	for _, tc := range []struct {
		name          string
		err           error
		code, message string
		logs          bool
	}{
		{"made for clients", Refusal(chat.CodeForbidden, "this session belongs to someone else")[0], chat.CodeForbidden, "this session belongs to someone else", false},
		{"a domain error", fmt.Errorf("claim: %w", &chat.Error{Code: chat.CodeRateLimited, Message: "slow down"}), chat.CodeRateLimited, "slow down", false},
		{"gqlgen's own", gqlerror.Errorf("must not be null"), "", "must not be null", false},
		{"a Go error", secret, chat.CodeInternal, "internal error", true},
		{"a Go error wrapped", fmt.Errorf("read conversation: %w", secret), chat.CodeInternal, "internal error", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged.Reset()
			got := present(ctx, tc.err)
			code, _ := got.Extensions["code"].(string)
			if code != tc.code || got.Message != tc.message {
				t.Fatalf("shown %q with code %q, want %q with %q", got.Message, code, tc.message, tc.code)
			}
			if strings.Contains(logged.String(), "connection refused") != tc.logs {
				t.Fatalf("logged %q; want the cause logged: %v", logged.String(), tc.logs)
			}
		})
	}
}
