package graph

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns how an error reaches a GraphQL client, whatever the
// transport: what a client sees is a *chat.Error dressed as a GraphQL error
// (its message, and its code in extensions.code), so chat.ErrorCode reads the
// same code the client does; anything else is logged and shown as INTERNAL.

// clientError is the GraphQL error a client sees for a domain error: ce's
// message and code, with ce in its chain.
func clientError(path ast.Path, ce *chat.Error) *gqlerror.Error {
	return &gqlerror.Error{
		Err:        ce,
		Message:    ce.Message,
		Path:       path,
		Extensions: map[string]any{"code": ce.Code},
	}
}

// codeError is a GraphQL error carrying a stable extensions.code, at the
// path of the field ctx resolves.
func codeError(ctx context.Context, code, message string) *gqlerror.Error {
	return clientError(graphql.GetPath(ctx), &chat.Error{Code: code, Message: message})
}

// Refusal is an operation refused before it runs, as the list of errors a
// transport sends: one error with a message for the client and its code.
func Refusal(code, message string) gqlerror.List {
	return gqlerror.List{clientError(nil, &chat.Error{Code: code, Message: message})}
}

// msgOperationTimeout goes with chat.CodeOperationTimeout.
const msgOperationTimeout = "the operation took longer than the server allows"

// msgStorageFull goes with chat.CodeStorageUnavailable.
const msgStorageFull = "the server cannot store anything now; try again later"

// fromDomain maps a domain error to a GraphQL error; anything unexpected is
// logged and shown as UNAVAILABLE, never as its own text.
func (r *Resolver) fromDomain(ctx context.Context, err error) *gqlerror.Error {
	if ce, ok := errors.AsType[*chat.Error](err); ok {
		return clientError(graphql.GetPath(ctx), ce)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		r.Log.Warn("operation timed out", "err", err)
		return codeError(ctx, chat.CodeOperationTimeout, msgOperationTimeout)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return codeError(ctx, chat.CodeCancelled, "the client left")
	}
	r.Log.Error("request failed", "err", err)
	if errors.Is(err, chat.ErrStorageFull) {
		return codeError(ctx, chat.CodeStorageUnavailable, msgStorageFull)
	}
	return codeError(ctx, chat.CodeUnavailable, "the server could not accept the request, try again")
}

// presentError is the executor's error presenter: an error that carries a
// code, and gqlgen's own errors (written for clients: a syntax error, a
// field that does not exist), are shown as they are; any other error a
// resolver lets out is shown by its code and safe message only, INTERNAL
// unless it holds a *chat.Error, and logged.
func presentError(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gerr := graphql.DefaultErrorPresenter(ctx, err)
		if gerr.Extensions["code"] != nil {
			return gerr
		}
		if _, ok := err.(*gqlerror.Error); ok {
			return gerr
		}
		code := chat.ErrorCode(err)
		if code == chat.CodeInternal {
			log.Error("unexpected resolver error", "err", err)
		}
		gerr.Message = chat.ErrorMessage(err)
		gerr.Extensions = map[string]any{"code": code}
		return gerr
	}
}

// recoverPanic is the executor's recover function: a resolver that panics
// answers INTERNAL and the server goes on; the log gets the panic and where.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.Error("resolver panic", "panic", p, "stack", string(debug.Stack()))
		return clientError(nil, &chat.Error{Code: chat.CodeInternal, Message: "internal error"})
	}
}
