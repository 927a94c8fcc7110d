// Dead letters.
//
// Stream TC_DEAD, subject tc.dead: requests that failed on every delivery,
// kept 30 days for the operator. The exhausted-delivery advisories of the
// workers consumer are what finds them.

package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	deadStream = "TC_DEAD"
	deadSubj   = "tc.dead"
)

// DeadLetter is a request that failed on every delivery.
type DeadLetter = chat.DeadLetter

// WatchExhausted calls fn, on one node of the cluster, for each request whose
// deliveries ran out (its workers kept dying or failing).
func (b *Bus) WatchExhausted(fn func(req chat.Request, deliveries uint64) error) (stop func(), err error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + requestsStream + "." + workersName
	sub, err := b.nc.QueueSubscribe(subject, "tc-dead-letters", func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			b.log.Error("undecodable max-deliveries advisory", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		raw, err := b.requests.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			b.log.Error("exhausted request gone", "seq", adv.StreamSeq, "err", err)
			return
		}
		var req chat.Request
		if err := json.Unmarshal(raw.Data, &req); err != nil {
			b.log.Error("undecodable exhausted request", "seq", adv.StreamSeq, "err", err)
			return
		}
		// The request leaves the queue only once its end is published: no
		// advisory comes again for it, so a failure here is retried.
		for try := 0; ; try++ {
			err := fn(req, adv.Deliveries)
			if err == nil {
				break
			}
			if try == 4 {
				b.log.Error("could not end an exhausted request; it stays in the queue", "request", req.ID, "err", err)
				return
			}
			time.Sleep(time.Second << try)
		}
		if err := b.requests.DeleteMsg(ctx, adv.StreamSeq); err != nil {
			b.log.Error("remove exhausted request", "request", req.ID, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch exhausted requests: %w", err)
	}
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch exhausted requests: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// RecordDeadLetter keeps a dead letter for the operator.
func (b *Bus) RecordDeadLetter(ctx context.Context, d DeadLetter) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	if _, err := b.js.Publish(ctx, deadSubj, data, jetstream.WithMsgID(chat.AnswerKey(d.Request.SessionID, d.Request.ID))); err != nil {
		return fmt.Errorf("record dead letter %s: %w", d.Request.ID, err)
	}
	return nil
}

// DeadLetters returns the newest last dead letters, oldest first.
func (b *Bus) DeadLetters(ctx context.Context, last int) ([]DeadLetter, error) {
	s, err := b.js.Stream(ctx, deadStream)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out := []DeadLetter{}
	if last <= 0 || info.State.Msgs == 0 {
		return out, nil
	}
	from := info.State.FirstSeq
	if info.State.LastSeq >= uint64(last) {
		from = max(from, info.State.LastSeq-uint64(last)+1)
	}
	err = readRange(ctx, s, deadSubj, from, info.State.LastSeq, func(data []byte, seq uint64) error {
		var d DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("decode dead letter %d: %w", seq, err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// setupDead creates the dead letters' stream.
func (b *Bus) setupDead(ctx context.Context) error {
	if _, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     deadStream,
		Subjects: []string{deadSubj},
		Storage:  jetstream.FileStorage,
		MaxAge:   30 * 24 * time.Hour,
		Replicas: b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", deadStream, err)
	}
	return nil
}
