package graph

import (
	"context"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
)

// This file owns the resolvers' operations as the other protocols (the AI
// SDK's UI message stream, AG-UI, AppSync Events' publish) call them, without GraphQL: the same
// checks of the caller, the session's owner, the limits and the metrics,
// the same errors (a *gqlerror.Error carrying a *chat.Error), so asking
// through any protocol is asking through GraphQL.

// Ask asks a question as getLlmResponse does and returns its request id.
func (r *Resolver) Ask(ctx context.Context, input model.GetLlmResponseInput) (string, error) {
	resp, err := r.Query().GetLlmResponse(ctx, input)
	if err != nil {
		return "", err
	}
	return *resp.RequestID, nil
}

// Cancel cancels an answer as cancelResponse does; false when it had ended.
func (r *Resolver) Cancel(ctx context.Context, session, request string) (bool, error) {
	res, err := r.Mutation().CancelResponse(ctx, session, request)
	if err != nil {
		return false, err
	}
	return res.Cancelled, nil
}

// Approve answers a tool call's approval as answerApproval does.
func (r *Resolver) Approve(ctx context.Context, session, request, call string, approved bool, reason string) error {
	_, err := r.Mutation().AnswerApproval(ctx, session, request, call, approved, &reason)
	return err
}

// Turns is the session's stored conversation, for its owner, with the
// answer in progress as far as it got.
func (r *Resolver) Turns(ctx context.Context, session string) ([]chat.Turn, error) {
	if _, gerr := r.session(ctx, session); gerr != nil {
		return nil, gerr
	}
	conv, err := r.Store.Conversation(ctx, session)
	if err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	if err := r.inProgress(ctx, &conv); err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	return conv.Turns, nil
}

// EventAt is the session's event at the history position seq, for its
// owner; nil when the session has no event there (another session's, one
// gone from the history, one never stored).
func (r *Resolver) EventAt(ctx context.Context, session string, seq uint64) (*chat.Event, error) {
	if _, gerr := r.session(ctx, session); gerr != nil {
		return nil, gerr
	}
	var found *chat.Event
	err := r.Store.ReplayEvents(ctx, session, seq, seq, func(ev chat.Event) error {
		found = &ev
		return nil
	})
	if err != nil {
		return nil, r.fromDomain(ctx, err)
	}
	return found, nil
}

// Pending is the session's newest question whose answer has not ended, for
// its owner: its request id, and the history cursor after which all of its
// events are found (nil when the session has none yet). request is ""
// when every answer has ended.
func (r *Resolver) Pending(ctx context.Context, session string) (request string, after *uint64, err error) {
	if _, gerr := r.session(ctx, session); gerr != nil {
		return "", nil, gerr
	}
	last, err := r.Store.LastEvent(ctx, session)
	if err != nil {
		return "", nil, r.fromDomain(ctx, err)
	}
	if last != nil && !last.Type.Terminal() && last.AnswerStart() > 0 && last.RequestID != "" {
		// In flight: everything from its START.
		from := last.AnswerStart() - 1
		return last.RequestID, &from, nil
	}
	// Accepted and not started: everything after the newest event.
	conv, err := r.Store.Conversation(ctx, session)
	if err != nil {
		return "", nil, r.fromDomain(ctx, err)
	}
	ended := map[string]bool{}
	for _, t := range conv.Turns {
		if t.Role == chat.RoleAssistant && t.Status != chat.StatusInProgress {
			ended[t.RequestID] = true
		}
	}
	for i := len(conv.Turns) - 1; i >= 0; i-- {
		t := conv.Turns[i]
		if t.Role != chat.RoleUser {
			continue
		}
		if ended[t.RequestID] {
			return "", nil, nil
		}
		if last != nil {
			return t.RequestID, &last.Seq, nil
		}
		return t.RequestID, nil, nil
	}
	return "", nil, nil
}

// Send publishes a message into a session as sendMessage does: for service
// principals only.
func (r *Resolver) Send(ctx context.Context, input model.SendMessageInput) error {
	_, err := r.Mutation().SendMessage(ctx, input)
	return err
}
