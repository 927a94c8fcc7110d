package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
)

// Store is what the resolvers need from the bus.
type Store interface {
	AppendTurn(ctx context.Context, session string, t chat.Turn) error
	Enqueue(ctx context.Context, req chat.Request) error
	// Full says whether the store is known to have no space left.
	Full() error
	PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error)
	Conversation(ctx context.Context, session string) (chat.Conversation, error)
	Cancel(ctx context.Context, session, request string) error
	LastEvent(ctx context.Context, session string) (*chat.Event, error)
	ReplayEvents(ctx context.Context, session string, from, to uint64, fn func(chat.Event) error) error
	DeadLetters(ctx context.Context, last int) ([]chat.DeadLetter, error)
	// AnswerApproval answers a tool call's pending approval, once.
	AnswerApproval(ctx context.Context, session, request, call string, approved bool, reason, by string) (chat.ApprovalRecord, error)
}

// Bounds of an approval's answer.
const (
	maxCallIDBytes    = 256
	maxApprovalReason = 1000
)

// Authorizer decides whether a principal may touch a session.
type Authorizer interface {
	Authorize(ctx context.Context, p *auth.Principal, session string) error
}

// RateLimiter bounds how often a principal may ask.
type RateLimiter interface {
	Allow(key string) (ok bool, retryAfter time.Duration)
}

// AskRefusals logs a question refused over its rate.
type AskRefusals interface {
	Ask(ctx context.Context, addr netip.Addr, principal, limitKey string, retryAfter time.Duration)
}

// Resolver answers queries and mutations. Subscriptions do not go through it:
// the connection engine serves them from the hub (see Subscription).
type Resolver struct {
	Store           Store
	MaxMessageBytes int
	// ModelNames are the models a client may ask for; DefaultModel is used when
	// it names none.
	ModelNames   []string
	DefaultModel string
	Sessions     Authorizer
	Asks         RateLimiter
	// Refusals logs asks refused over their rate; may be nil.
	Refusals AskRefusals
	// Accepting reports whether new asks are taken (false while shutting down).
	Accepting func() bool
	// Asked counts questions accepted ("OK") or refused (the code); may be nil.
	Asked func(code string)
	// Usage answers the usage query; nil says usage is not kept.
	Usage UsageReader
	// Budgets refuses asks over budget; nil refuses none. ModelRef names
	// a model ("provider:model-id") by the name a client uses.
	Budgets  BudgetChecker
	ModelRef func(name string) string
	Log      *slog.Logger
}

// session authenticates the caller and authorizes it on the session.
func (r *Resolver) session(ctx context.Context, sessionID string) (*auth.Principal, *gqlerror.Error) {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil, codeError(ctx, chat.CodeUnauthenticated, "an API key or token is required")
	}
	if !chat.ValidSessionID(sessionID) {
		return nil, codeError(ctx, chat.CodeBadSessionID, "sessionId must be 1 to 128 letters, digits, '-' or '_'")
	}
	if err := r.Sessions.Authorize(ctx, p, sessionID); err != nil {
		if errors.Is(err, auth.ErrForbidden) {
			return nil, codeError(ctx, chat.CodeForbidden, "this session belongs to someone else")
		}
		var limited *auth.RateLimitedError
		if errors.As(err, &limited) {
			e := codeError(ctx, chat.CodeRateLimited, "too many new sessions; wait before starting another")
			e.Extensions["retryAfter"] = int(limited.RetryAfter/time.Second) + 1
			return nil, e
		}
		return nil, r.fromDomain(ctx, err)
	}
	return p, nil
}

func (r *Resolver) allowed(model string) bool {
	for _, m := range r.ModelNames {
		if m == model {
			return true
		}
	}
	return false
}

// inProgress fills in the partial text of the answer being generated, read
// from the session's event history. The newest event may be a service's
// message sent mid-answer; it carries the answer's START position too.
func (r *Resolver) inProgress(ctx context.Context, conv *chat.Conversation) error {
	last, err := r.Store.LastEvent(ctx, conv.SessionID)
	if err != nil || last == nil || last.Type.Terminal() {
		return err
	}
	start := last.AnswerStart()
	if start == 0 {
		return nil
	}
	var (
		text   strings.Builder
		answer *chat.Event // the answer's newest event
	)
	newest := map[string]uint64{}
	err = r.Store.ReplayEvents(ctx, conv.SessionID, start, last.Seq, func(ev chat.Event) error {
		if ev.RequestID == "" || (answer != nil && ev.RequestID != answer.RequestID) || chat.Stale(newest, &ev) {
			return nil // a service's message, or not this answer
		}
		answer = &ev
		switch ev.Type {
		case chat.EventDelta:
			text.WriteString(ev.Message)
		case chat.EventRestart:
			text.Reset()
		}
		return nil
	})
	if err != nil || answer == nil || answer.Type.Terminal() {
		return err
	}
	// An agent run in progress has a stored turn with its steps: the live
	// text is the newer.
	for i, t := range conv.Turns {
		if t.RequestID == answer.RequestID && t.Role == chat.RoleAssistant && t.Status == chat.StatusInProgress {
			conv.Turns[i].Text = text.String()
			return nil
		}
	}
	conv.Apply(chat.Turn{RequestID: answer.RequestID, Role: chat.RoleAssistant, Text: text.String(),
		Status: chat.StatusInProgress, Locale: answer.Locale, Model: answer.Model, At: answer.TimeStamp})
	return nil
}

// reenqueueWindow is how long after a question was stored an ask with the
// same id may enqueue it again: well inside the requests stream's duplicate
// window (2 minutes), so a request already queued is not queued twice.
const reenqueueWindow = 90 * time.Second

// askState is what the session already holds of a question with a given id.
type askState int

const (
	notAsked askState = iota
	// asked: the question and its answer (or its start) are recorded.
	asked
	// unqueued: the question is stored but may never have reached the
	// workers (the enqueue after it failed), and no answer exists yet.
	unqueued
)

// asked reports what the session already holds of a question with this id.
func (r *Resolver) asked(ctx context.Context, session, request string) (askState, error) {
	conv, err := r.Store.Conversation(ctx, session)
	if err != nil {
		return notAsked, err
	}
	state := notAsked
	var at time.Time
	for _, t := range conv.Turns {
		if t.RequestID != request {
			continue
		}
		if t.Role == chat.RoleAssistant {
			return asked, nil
		}
		state, at = asked, t.At
	}
	if state == asked && time.Since(at) < reenqueueWindow {
		return unqueued, nil
	}
	return state, nil
}

// askResponse is the AWS sample's immediate answer, plus the request id.
func askResponse(input model.GetLlmResponseInput, requestID string) *model.GetLlmResponse {
	success, plain := "success", "PlainText"
	return &model.GetLlmResponse{
		SessionID: &input.SessionID,
		Locale:    &input.Locale,
		Messages:  []*model.Message{{Content: &success, ContentType: &plain}},
		RequestID: &requestID,
	}
}

// TurnModel converts a stored turn to the GraphQL type.
func TurnModel(t chat.Turn) *model.Turn {
	role := model.RoleUser
	if t.Role == chat.RoleAssistant {
		role = model.RoleAssistant
	}
	m := &model.Turn{RequestID: t.RequestID, Role: role, Text: t.Text, Status: model.TurnStatus(t.Status), At: TimeStamp(t.At)}
	if t.Locale != "" {
		m.Locale = &t.Locale
	}
	if t.Model != "" {
		m.Model = &t.Model
	}
	if t.Usage != nil {
		m.Usage = UsageModel(*t.Usage)
	}
	m.Steps = runSteps(t.Run)
	return m
}

// UsageModel converts usage to the GraphQL type.
func UsageModel(u chat.Usage) *model.Usage {
	m := &model.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens}
	if u.ReasoningTokens > 0 {
		m.ReasoningTokens = &u.ReasoningTokens
	}
	if u.CacheReadTokens > 0 {
		m.CacheReadTokens = &u.CacheReadTokens
	}
	if u.CacheWriteTokens > 0 {
		m.CacheWriteTokens = &u.CacheWriteTokens
	}
	return m
}

// runSteps is a stored run as the conversation shows it: one step per model
// call, its tool calls with the results that followed. Signatures and
// redacted reasoning are never shown.
func runSteps(run []chat.Message) []*model.RunStep {
	out := []*model.RunStep{}
	for i, msg := range run {
		if msg.Role != chat.RoleAssistant {
			continue
		}
		results := map[string]chat.Block{}
		if i+1 < len(run) && run[i+1].Role == chat.RoleUser {
			for _, b := range run[i+1].Blocks {
				results[b.CallID] = b
			}
		}
		var reasoning, text strings.Builder
		step := &model.RunStep{ToolCalls: []*model.RunToolCall{}, Sources: []*model.Source{}}
		for _, b := range msg.Blocks {
			switch b.Kind {
			case chat.BlockReasoning:
				reasoning.WriteString(b.Text)
			case chat.BlockText:
				text.WriteString(b.Text)
			case chat.BlockToolCall:
				call := &model.RunToolCall{ID: b.CallID, Name: b.Name, Input: string(b.Input)}
				if r, ok := results[b.CallID]; ok {
					out, ms := r.Text, r.DurationMillis
					call.Output, call.IsError, call.Truncated, call.DurationMs = &out, r.IsError, r.Truncated, &ms
				}
				step.ToolCalls = append(step.ToolCalls, call)
			case chat.BlockSource:
				if s := b.Source; s != nil {
					step.Sources = append(step.Sources, &model.Source{Title: optString(s.Title), URL: optString(s.URL), Text: optString(s.Text)})
				}
			}
		}
		step.Reasoning, step.Text = reasoning.String(), text.String()
		out = append(out, step)
	}
	return out
}

// countAsk tells the metrics whether a question was accepted, or its code.
func (r *Resolver) countAsk(err error) {
	if r.Asked == nil {
		return
	}
	code := "OK"
	if err != nil {
		code = chat.ErrorCode(err)
	}
	r.Asked(code)
}

// maxConversationPage bounds the questions one conversation page holds.
const maxConversationPage = 500

// conversationPage keeps, of turns (oldest first, each question followed by
// its answer), those of the newest last questions older than the question
// before (none when before names no question); older says whether
// older questions remain.
func conversationPage(turns []*model.Turn, last int, before *string) (page []*model.Turn, older bool) {
	end := len(turns)
	if before != nil {
		end = 0 // a question no longer kept (or never asked) has nothing before it
		for i, t := range turns {
			if t.RequestID == *before {
				end = i
				break
			}
		}
	}
	start, questions := end, 0
	for start > 0 {
		if id := turns[start-1].RequestID; start == end || id != turns[start].RequestID {
			if questions == last {
				break
			}
			questions++
		}
		start--
	}
	return turns[start:end], start > 0
}

// optString is s as an optional GraphQL string: null when empty.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
