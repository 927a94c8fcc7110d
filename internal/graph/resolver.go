package graph

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
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

// SendMessage is the resolver for the sendMessage field.
func (r *mutationResolver) SendMessage(ctx context.Context, input model.SendMessageInput) (*model.SendMessageResponse, error) {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil, codeError(ctx, chat.CodeUnauthenticated, "an API key is required")
	}
	if !p.IsService() {
		return nil, codeError(ctx, chat.CodeForbidden, "sendMessage needs a service key")
	}
	if !chat.ValidSessionID(input.SessionID) {
		return nil, codeError(ctx, chat.CodeBadSessionID, "sessionId must be 1 to 128 letters, digits, '-' or '_'")
	}
	if len(input.Message) > r.MaxMessageBytes {
		return nil, codeError(ctx, chat.CodeMessageTooLarge, "message is larger than the server accepts")
	}
	ev := chat.Event{
		Type:      chat.EventMessage,
		SessionID: input.SessionID,
		Message:   input.Message,
		Locale:    input.Locale,
		TimeStamp: time.Now().UTC(),
	}
	// The sample's orchestrator sends its markers through sendMessage; give
	// them their typed meaning.
	switch input.Message {
	case chat.MarkerStart:
		ev.Type = chat.EventStart
	case chat.MarkerEnd:
		ev.Type = chat.EventEnd
	case chat.MarkerError:
		ev.Type = chat.EventError
	}
	seq, err := r.Store.PublishEvent(ctx, ev, "")
	if err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	ev.Seq = seq
	return EventModel(&ev), nil
}

// GetLlmResponse is the resolver for the getLlmResponse field: it accepts the
// question and returns at once; the answer streams on onSendMessage.
func (r *queryResolver) GetLlmResponse(ctx context.Context, input model.GetLlmResponseInput) (*model.GetLlmResponse, error) {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil, codeError(ctx, chat.CodeUnauthenticated, "an API key is required")
	}
	if err := chat.ValidateAsk(input.SessionID, input.Message, input.Locale, r.MaxMessageBytes); err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	now := time.Now().UTC()
	req := chat.Request{
		ID:         id.String(),
		SessionID:  input.SessionID,
		Message:    input.Message,
		Locale:     input.Locale,
		Principal:  p.ID,
		AcceptedAt: now,
	}
	if err := r.Store.AppendTurn(ctx, req.SessionID, chat.Turn{
		RequestID: req.ID, Role: chat.RoleUser, Text: req.Message,
		Status: chat.StatusComplete, Locale: req.Locale, At: now,
	}); err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	if err := r.Store.Enqueue(ctx, req); err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	r.Log.Info("question accepted", "session", req.SessionID, "request", req.ID, "principal", p.ID)
	success, plain := "success", "PlainText"
	return &model.GetLlmResponse{
		SessionID: &input.SessionID,
		Locale:    &input.Locale,
		Messages:  []*model.Message{{Content: &success, ContentType: &plain}},
		RequestID: &req.ID,
	}, nil
}

// OnSendMessage is never reached: subscriptions are served by the connection
// engine (WebSocket and SSE), which projects hub events without running the
// executor per event per subscriber.
func (r *subscriptionResolver) OnSendMessage(ctx context.Context, sessionID string) (<-chan *model.SendMessageResponse, error) {
	return nil, codeError(ctx, chat.CodeBadInput, "subscriptions are served over WebSocket or SSE on /graphql")
}

// Mutation returns MutationResolver implementation.
func (r *Resolver) Mutation() MutationResolver { return &mutationResolver{r} }

// Query returns QueryResolver implementation.
func (r *Resolver) Query() QueryResolver { return &queryResolver{r} }

// Subscription returns SubscriptionResolver implementation.
func (r *Resolver) Subscription() SubscriptionResolver { return &subscriptionResolver{r} }

type (
	mutationResolver     struct{ *Resolver }
	queryResolver        struct{ *Resolver }
	subscriptionResolver struct{ *Resolver }
)
