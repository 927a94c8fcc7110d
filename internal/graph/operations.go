package graph

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
)

// Operations is the one way GraphQL runs, whatever the transport (HTTP
// POST, the WebSocket dialects, SSE): one gqlgen executor with the limits,
// the panic recovery and the error masking every client gets. Queries and
// mutations run on it; subscriptions become a session and a Shape, served
// from the hub.
type Operations struct {
	exec     *executor.Executor
	sessions Authorizer
	log      *slog.Logger

	mu     sync.Mutex
	shapes map[string]*Shape
}

// NewOperations returns Operations over the executable schema. A resolver
// that panics, or lets out an error not made for clients, is logged to log
// and answered INTERNAL.
func NewOperations(es graphql.ExecutableSchema, limits Limits, sessions Authorizer, log *slog.Logger) *Operations {
	exec := executor.New(es)
	for _, ext := range limits.Extensions() {
		exec.Use(ext)
	}
	exec.SetDisableSuggestion(!limits.Suggestions)
	exec.SetErrorPresenter(presentError(log))
	exec.SetRecoverFunc(recoverPanic(log))
	return &Operations{exec: exec, sessions: sessions, log: log, shapes: make(map[string]*Shape)}
}

// presentPanic is what a client sees of a panic outside the resolvers (in an
// extension, say), which gqlgen does not recover itself.
func (o *Operations) presentPanic(ctx context.Context, p any) *gqlerror.Error {
	if gerr, ok := o.exec.PresentRecoveredError(ctx, p).(*gqlerror.Error); ok {
		return gerr
	}
	return clientError(nil, &chat.Error{Code: chat.CodeInternal, Message: "internal error"})
}

// Operation is a parsed, validated operation.
type Operation struct {
	opCtx *graphql.OperationContext
	// Subscription is set when the operation subscribes to onSendMessage.
	Subscription *Subscription
}

// Subscription is a validated onSendMessage subscription.
type Subscription struct {
	SessionID string
	// After is the resume cursor, nil for none.
	After *uint64
	Shape *Shape
}

// Prepare parses and validates an operation. Variables the operation does not
// declare are ignored (the AWS sample's UI sends one).
func (o *Operations) Prepare(ctx context.Context, params *graphql.RawParams) (op *Operation, errs gqlerror.List) {
	defer func() {
		if p := recover(); p != nil {
			op, errs = nil, gqlerror.List{o.presentPanic(ctx, p)}
		}
	}()
	if params.ReadTime.Start.IsZero() {
		now := graphql.Now()
		params.ReadTime = graphql.TraceTiming{Start: now, End: now}
	}
	ctx = graphql.StartOperationTrace(ctx)
	opCtx, errs := o.exec.CreateOperationContext(ctx, params)
	if len(errs) > 0 {
		return nil, errs
	}
	op = &Operation{opCtx: opCtx}
	if opCtx.Operation.Operation != ast.Subscription {
		return op, nil
	}
	fields := graphql.CollectFields(opCtx, opCtx.Operation.SelectionSet, []string{"Subscription"})
	if len(fields) != 1 || fields[0].Name != "onSendMessage" {
		return nil, Refusal(chat.CodeBadInput, "a subscription selects exactly one field, onSendMessage")
	}
	f := fields[0]
	args := f.ArgumentMap(opCtx.Variables)
	session, _ := args["sessionId"].(string)
	if !chat.ValidSessionID(session) {
		return nil, Refusal(chat.CodeBadSessionID, "sessionId must be 1 to 128 letters, digits, '-' or '_'")
	}
	if err := o.sessions.Authorize(ctx, auth.FromContext(ctx), session); err != nil {
		if errors.Is(err, auth.ErrForbidden) || errors.Is(err, auth.ErrUnauthenticated) {
			return nil, Refusal(chat.CodeForbidden, "this session belongs to someone else")
		}
		var limited *auth.RateLimitedError
		if errors.As(err, &limited) {
			refused := Refusal(chat.CodeRateLimited, "too many new sessions; wait before starting another")
			refused[0].Extensions["retryAfter"] = int(limited.RetryAfter/time.Second) + 1
			return nil, refused
		}
		o.log.WarnContext(ctx, "could not check access to a session", "session", session, "err", err)
		return nil, Refusal(chat.CodeUnavailable, "could not check access to the session, try again")
	}
	agent, _ := args["agent"].(bool)
	op.Subscription = &Subscription{SessionID: session, Shape: o.shape(opCtx, f, agent)}
	if after, ok := args["after"].(string); ok {
		seq, err := ParseCursor(after)
		if err != nil {
			return nil, Refusal(chat.CodeBadCursor, "after must be a cursor from an earlier event")
		}
		op.Subscription.After = &seq
	}
	return op, nil
}

// ParseCursor reads a cursor made by Cursor.
func ParseCursor(s string) (uint64, error) {
	return strconv.ParseUint(s, 10, 64)
}

// Execute runs a query or mutation and returns its single result.
func (o *Operations) Execute(ctx context.Context, op *Operation) (resp *graphql.Response) {
	defer func() {
		if p := recover(); p != nil {
			resp = &graphql.Response{Errors: gqlerror.List{o.presentPanic(ctx, p)}}
		}
	}()
	handler, ctx := o.exec.DispatchOperation(ctx, op.opCtx)
	return handler(ctx)
}

// Shape is a compiled selection of onSendMessage: it encodes an event as the
// subscription's "data" object, exactly as the executor would, without running
// it. Identical selections share one Shape, so encodings can be cached per
// shape and shared between subscribers.
type Shape struct {
	key    string // response key of the root field
	fields []shapeField
	// agent: the subscriber asked for the agent events too.
	agent bool
}

// Wants reports whether the subscriber is sent ev: the agent events go only
// to those who asked for them.
func (s *Shape) Wants(ev *chat.Event) bool { return s.agent || !ev.Type.Agent() }

type shapeField struct {
	key  string // response key (alias or name)
	name string
	sub  []shapeField
}

func (o *Operations) shape(opCtx *graphql.OperationContext, root graphql.CollectedField, agent bool) *Shape {
	s := &Shape{key: root.Alias, fields: collect(opCtx, root.Selections, "SendMessageResponse"), agent: agent}
	var canon strings.Builder
	if agent {
		canon.WriteString("agent ")
	}
	canon.WriteString(s.key)
	writeCanon(&canon, s.fields)
	o.mu.Lock()
	defer o.mu.Unlock()
	if have, ok := o.shapes[canon.String()]; ok {
		return have
	}
	if len(o.shapes) < 10000 {
		o.shapes[canon.String()] = s
	}
	return s
}

func collect(opCtx *graphql.OperationContext, sel ast.SelectionSet, typeName string) []shapeField {
	var out []shapeField
	for _, f := range graphql.CollectFields(opCtx, sel, []string{typeName}) {
		sf := shapeField{key: f.Alias, name: f.Name}
		if t, ok := subTypes[f.Name]; ok {
			sf.sub = collect(opCtx, f.Selections, t)
		}
		out = append(out, sf)
	}
	return out
}

func writeCanon(b *strings.Builder, fields []shapeField) {
	b.WriteByte('{')
	for _, f := range fields {
		b.WriteString(f.key)
		b.WriteByte(':')
		b.WriteString(f.name)
		if f.sub != nil {
			writeCanon(b, f.sub)
		}
		b.WriteByte(' ')
	}
	b.WriteByte('}')
}

// timeStampLayout is AppSync's AWSDateTime as its events carry it.
const timeStampLayout = "2006-01-02T15:04:05.000Z"

// TimeStamp formats an event time as AppSync's AWSDateTime does.
func TimeStamp(t time.Time) string { return t.UTC().Format(timeStampLayout) }

// Cursor formats an event's history position for clients.
func Cursor(seq uint64) string { return strconv.FormatUint(seq, 10) }

// subTypes are the object fields of SendMessageResponse, by their types.
var subTypes = map[string]string{
	"usage": "Usage", "error": "StreamError", "toolCall": "ToolCall", "toolResult": "ToolResult",
	"step": "Step", "source": "Source", "approval": "Approval",
}

// Encode returns the subscription's data object for ev, e.g.
// {"onSendMessage":{"message":"Hel"}}, or nil for an event the subscriber
// is not sent (see Wants).
func (s *Shape) Encode(ev *chat.Event) []byte {
	if !s.Wants(ev) {
		return nil
	}
	b := make([]byte, 0, 256)
	b = append(b, '{')
	b = chat.AppendQuoted(b, s.key)
	b = append(b, ':')
	b = encodeEvent(b, s.fields, ev)
	return append(b, '}')
}

func encodeEvent(b []byte, fields []shapeField, ev *chat.Event) []byte {
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = chat.AppendQuoted(b, f.key)
		b = append(b, ':')
		switch f.name {
		case "__typename":
			b = chat.AppendQuoted(b, "SendMessageResponse")
		case "sessionId":
			b = chat.AppendQuoted(b, ev.SessionID)
		case "message":
			b = chat.AppendQuoted(b, ev.Message)
		case "locale":
			b = chat.AppendQuoted(b, ev.Locale)
		case "timeStamp":
			b = append(b, '"') // the layout's characters need no escaping
			b = ev.TimeStamp.UTC().AppendFormat(b, timeStampLayout)
			b = append(b, '"')
		case "type":
			b = chat.AppendQuoted(b, string(ev.Type))
		case "requestId":
			b = appendOptString(b, ev.RequestID)
		case "index":
			if ev.RequestID == "" {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendInt(b, int64(ev.Index), 10)
			}
		case "cursor":
			if ev.Seq == 0 {
				b = append(b, "null"...)
			} else {
				b = append(b, '"')
				b = strconv.AppendUint(b, ev.Seq, 10)
				b = append(b, '"')
			}
		case "stopReason":
			b = appendOptString(b, ev.StopReason)
		case "model":
			b = appendOptString(b, ev.Model)
		case "ttftMs":
			if ev.Type != chat.EventEnd {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendInt(b, ev.TTFTMillis, 10)
			}
		case "usage":
			b = encodeUsage(b, f.sub, ev.Usage)
		case "error":
			b = encodeError(b, f.sub, ev.Error)
		case "toolCall", "toolResult", "step", "source", "approval":
			b = encodeAgent(b, f.name, f.sub, ev)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

func encodeUsage(b []byte, fields []shapeField, u *chat.Usage) []byte {
	if u == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = chat.AppendQuoted(b, f.key)
		b = append(b, ':')
		switch f.name {
		case "__typename":
			b = chat.AppendQuoted(b, "Usage")
		case "inputTokens":
			b = strconv.AppendInt(b, int64(u.InputTokens), 10)
		case "outputTokens":
			b = strconv.AppendInt(b, int64(u.OutputTokens), 10)
		case "totalTokens":
			b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
		case "reasoningTokens":
			b = appendOptInt(b, u.ReasoningTokens)
		case "cacheReadTokens":
			b = appendOptInt(b, u.CacheReadTokens)
		case "cacheWriteTokens":
			b = appendOptInt(b, u.CacheWriteTokens)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

func encodeError(b []byte, fields []shapeField, e *chat.StreamError) []byte {
	if e == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = chat.AppendQuoted(b, f.key)
		b = append(b, ':')
		switch f.name {
		case "__typename":
			b = chat.AppendQuoted(b, "StreamError")
		case "code":
			b = chat.AppendQuoted(b, e.Code)
		case "message":
			b = chat.AppendQuoted(b, e.Message)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return chat.AppendQuoted(b, s)
}

// EventModel converts an event to the generated GraphQL type, for resolvers
// that return one (sendMessage).
func EventModel(ev *chat.Event) *model.SendMessageResponse {
	t := model.EventType(ev.Type)
	m := &model.SendMessageResponse{
		SessionID: ev.SessionID,
		Message:   ev.Message,
		Locale:    ev.Locale,
		TimeStamp: TimeStamp(ev.TimeStamp),
		Type:      &t,
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	m.RequestID = opt(ev.RequestID)
	m.StopReason = opt(ev.StopReason)
	m.Model = opt(ev.Model)
	if ev.RequestID != "" {
		idx := ev.Index
		m.Index = &idx
	}
	if ev.Seq != 0 {
		c := Cursor(ev.Seq)
		m.Cursor = &c
	}
	if ev.Type == chat.EventEnd {
		ms := int(ev.TTFTMillis)
		m.TtftMs = &ms
	}
	if ev.Usage != nil {
		m.Usage = &model.Usage{InputTokens: ev.Usage.InputTokens, OutputTokens: ev.Usage.OutputTokens, TotalTokens: ev.Usage.TotalTokens}
	}
	if ev.Error != nil {
		m.Error = &model.StreamError{Code: ev.Error.Code, Message: ev.Error.Message}
	}
	return m
}
