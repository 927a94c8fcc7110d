package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/chat"
)

// Store is what the resolvers need from the bus.
type Store interface {
	AppendTurn(ctx context.Context, session string, t chat.Turn) error
	Enqueue(ctx context.Context, req chat.Request) error
	PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error)
}

// Resolver answers queries and mutations. Subscriptions do not go through it:
// the connection engine serves them from the hub (see Subscription).
type Resolver struct {
	Store           Store
	MaxMessageBytes int
	Log             *slog.Logger
}

// codeError is a GraphQL error carrying a stable extensions.code.
func codeError(ctx context.Context, code, message string) *gqlerror.Error {
	return &gqlerror.Error{
		Message:    message,
		Path:       graphql.GetPath(ctx),
		Extensions: map[string]any{"code": code},
	}
}

// fromDomain maps a domain error to a GraphQL error; anything unexpected is
// logged and shown as INTERNAL, never as its own text.
func (r *Resolver) fromDomain(ctx context.Context, err error) *gqlerror.Error {
	var ce *chat.Error
	if errors.As(err, &ce) {
		return codeError(ctx, ce.Code, ce.Message)
	}
	r.Log.Error("request failed", "err", err)
	return codeError(ctx, chat.CodeUnavailable, "the server could not accept the request, try again")
}
