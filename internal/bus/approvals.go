// Approvals.
//
// KV bucket TC_APPROVALS, key <session>.<request>.<call>: a tool call's
// approval, written pending by the worker that needs it and answered once
// by the session's owner (an update at the pending revision, so a second
// answer is refused). Kept as long as sessions are, so an approval can be
// answered hours later and survives every process.

package bus

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokencast/tokencast/internal/chat"
)

const approvalBucket = "TC_APPROVALS"

// approvalKey names a call's approval; a call id outside the key alphabet
// (providers choose them) is hex-encoded.
func approvalKey(session, request, call string) string {
	if !chat.ValidRequestID(call) {
		call = "x" + hex.EncodeToString([]byte(call))
	}
	return chat.AnswerKey(session, request) + "." + call
}

// RequestApproval stores a pending approval of a call unless one is stored,
// and returns the one stored (answered, perhaps, while its worker was away).
func (b *Bus) RequestApproval(ctx context.Context, session, request string, info chat.ApprovalInfo) (chat.ApprovalRecord, error) {
	key := approvalKey(session, request, info.CallID)
	rec := chat.ApprovalRecord{ApprovalInfo: info}
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	_, err = b.approvals.Create(ctx, key, data)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rec, fmt.Errorf("request approval of %s: %w", key, b.storageFault(err))
	}
	stored, _, err := b.approval(ctx, key)
	return stored, err
}

func (b *Bus) approval(ctx context.Context, key string) (chat.ApprovalRecord, uint64, error) {
	var rec chat.ApprovalRecord
	e, err := b.approvals.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, chat.ErrApprovalNotPending
	}
	if err != nil {
		return rec, 0, fmt.Errorf("read approval %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("read approval %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// WaitApproval waits until the approval of a call is answered, or ctx ends.
func (b *Bus) WaitApproval(ctx context.Context, session, request, call string) (chat.ApprovalRecord, error) {
	key := approvalKey(session, request, call)
	w, err := b.approvals.Watch(ctx, key)
	if err != nil {
		return chat.ApprovalRecord{}, fmt.Errorf("watch approval %s: %w", key, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return chat.ApprovalRecord{}, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return chat.ApprovalRecord{}, fmt.Errorf("watch approval %s: the watch ended", key)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var rec chat.ApprovalRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return rec, fmt.Errorf("read approval %s: %w", key, err)
			}
			if rec.Answered {
				return rec, nil
			}
		}
	}
}

// AnswerApproval answers a pending approval once: ErrApprovalNotPending when
// none is stored, ErrAlreadyAnswered for a second answer, from any node.
func (b *Bus) AnswerApproval(ctx context.Context, session, request, call string, approved bool, reason, by string) (chat.ApprovalRecord, error) {
	key := approvalKey(session, request, call)
	rec, rev, err := b.approval(ctx, key)
	if err != nil {
		return rec, err
	}
	if rec.Answered {
		return rec, chat.ErrAlreadyAnswered
	}
	rec.Answered, rec.Approved, rec.Reason, rec.By, rec.At = true, approved, reason, by, time.Now().UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	if _, err := b.approvals.Update(ctx, key, data, rev); err != nil {
		if isWrongRevision(err) {
			return rec, chat.ErrAlreadyAnswered
		}
		return rec, fmt.Errorf("answer approval %s: %w", key, b.storageFault(err))
	}
	return rec, nil
}

// setupApprovals creates the approvals' bucket.
func (b *Bus) setupApprovals(ctx context.Context) (err error) {
	ttl := 2 * b.cfg.SessionTTL
	b.approvals, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   approvalBucket,
		TTL:      ttl,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", approvalBucket, err)
	}
	return nil
}
