// Conversations.
//
// Stream TC_TURNS, subjects tc.turn.<session>: a record per question and
// per end of an answer, kept --session-ttl, deduplicated by session,
// request, role, status and attempt.

package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	turnsStream = "TC_TURNS"
	turnsPrefix = "tc.turn."
)

// turnDedupWindow is how long the turns stream remembers a message id: two
// minutes, or the turns' whole life when that is shorter (the stream refuses
// a window longer than its MaxAge).
func turnDedupWindow(cfg Config) time.Duration {
	if cfg.SessionTTL > 0 {
		return min(2*time.Minute, cfg.SessionTTL)
	}
	return 2 * time.Minute
}

func turnSubject(session string) string { return turnsPrefix + session }

// AppendTurn stores a turn record of a conversation. A record with the same
// request, role, status and attempt is stored once.
func (b *Bus) AppendTurn(ctx context.Context, session string, t chat.Turn) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode turn: %w", err)
	}
	id := chat.AnswerKey(session, t.RequestID) + "." + string(t.Role) + "." + string(t.Status)
	if t.Attempt > 0 {
		id += "." + strconv.FormatUint(t.Attempt, 10)
	}
	if t.Status == chat.StatusInProgress {
		// An agent run in progress is stored after each step and each
		// tool result: each record holds more blocks than the one before,
		// and must not be taken for a retry of it.
		blocks := 0
		for _, m := range t.Run {
			blocks += len(m.Blocks)
		}
		id += "." + strconv.Itoa(len(t.Run)) + "." + strconv.Itoa(blocks)
	}
	if _, err := b.publishRetrying(ctx, turnSubject(session), data, id); err != nil {
		return fmt.Errorf("store %s turn of %s: %w", t.Role, session, err)
	}
	return nil
}

// LatestTurn returns the newest turn record of a session, nil for none.
func (b *Bus) LatestTurn(ctx context.Context, session string) (*chat.Turn, error) {
	last, err := b.turns.GetLastMsgForSubject(ctx, turnSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest turn of %s: %w", session, err)
	}
	var t chat.Turn
	if err := json.Unmarshal(last.Data, &t); err != nil {
		return nil, fmt.Errorf("decode turn %d: %w", last.Sequence, err)
	}
	return &t, nil
}

// ConversationOwner reports whether a session has stored turns and who
// asked them, as its questions record it: the newest question's owner, ""
// when no question records one.
func (b *Bus) ConversationOwner(ctx context.Context, session string) (owner string, has bool, err error) {
	t, err := b.LatestTurn(ctx, session)
	if err != nil || t == nil {
		return "", false, err
	}
	conv, err := b.Conversation(ctx, session)
	if err != nil {
		return "", true, err
	}
	for i := len(conv.Turns) - 1; i >= 0; i-- {
		if conv.Turns[i].Role == chat.RoleUser && conv.Turns[i].Owner != "" {
			return conv.Turns[i].Owner, true, nil
		}
	}
	return "", true, nil
}

// Conversation loads every turn of a session.
func (b *Bus) Conversation(ctx context.Context, session string) (chat.Conversation, error) {
	conv := chat.Conversation{SessionID: session}
	last, err := b.turns.GetLastMsgForSubject(ctx, turnSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return conv, nil
	}
	if err != nil {
		return conv, fmt.Errorf("load conversation %s: %w", session, err)
	}
	err = readRange(ctx, b.turns, turnSubject(session), 1, last.Sequence, func(data []byte, seq uint64) error {
		var t chat.Turn
		if err := json.Unmarshal(data, &t); err != nil {
			return fmt.Errorf("decode turn %d: %w", seq, err)
		}
		conv.Apply(t)
		return nil
	})
	return conv, err
}

// setupTurns creates the turns stream.
func (b *Bus) setupTurns(ctx context.Context) (err error) {
	b.turns, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        turnsStream,
		Subjects:    []string{turnsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.SessionTTL,
		Duplicates:  turnDedupWindow(b.cfg),
		AllowDirect: true,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", turnsStream, err)
	}
	return nil
}
