// The request queue.
//
// Stream TC_REQUESTS, subject tc.req: one message per accepted question,
// work-queue retention (a message is gone once a worker acks it), a two-minute
// duplicate window keyed by session and request id. Consumer "workers": every
// worker pulls from it; a request not acked within --ack-wait goes to another
// worker, at most --max-deliver times.

package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	requestsStream = "TC_REQUESTS"
	requestsSubj   = "tc.req"
	workersName    = "workers"
)

// Enqueue hands a request to the workers. The request id is the NATS message
// id, so the same request enqueued twice within the duplicate window is one.
func (b *Bus) Enqueue(ctx context.Context, req chat.Request) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := b.js.Publish(ctx, requestsSubj, data, jetstream.WithMsgID(chat.AnswerKey(req.SessionID, req.ID))); err != nil {
		return fmt.Errorf("enqueue request %s: %w", req.ID, b.storageFault(err))
	}
	return nil
}

// Delivery is a request handed to a worker; it must be acked, or nacked, or
// left to expire so another worker gets it.
type Delivery struct {
	request chat.Request
	attempt uint64 // deliveries of this request, from 1
	msg     jetstream.Msg
	nc      *nats.Conn
}

var _ chat.Delivery = (*Delivery)(nil)

// Request is the request delivered.
func (d *Delivery) Request() chat.Request { return d.request }

// Attempt counts deliveries of this request, from 1.
func (d *Delivery) Attempt() uint64 { return d.attempt }

// Ack says the request is done.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// InProgress resets the redelivery timer while an answer is generated.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Release hands the request back for another attempt after delay, and waits
// for the server to confirm. A NAK with a delay is written to the consumer's
// store (a plain one is not), so the hand-back survives the server stopping
// right after it, as it does at shutdown.
func (d *Delivery) Release(ctx context.Context, delay time.Duration) error {
	body := fmt.Appendf(nil, `-NAK {"delay": %d}`, max(delay, time.Millisecond).Nanoseconds())
	if _, err := d.nc.RequestWithContext(ctx, d.msg.Reply(), body); err != nil {
		return fmt.Errorf("release request %s: %w", d.request.ID, err)
	}
	return nil
}

// Drop removes a request that cannot be decoded or retried.
func (d *Delivery) Drop() error { return d.msg.Term() }

// NextRequest waits for the next request, until ctx ends.
func (b *Bus) NextRequest(ctx context.Context) (chat.Delivery, error) {
	for {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := b.work.Next(jetstream.FetchContext(fctx))
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fetch request: %w", err)
		}
		d := &Delivery{msg: msg, nc: b.nc}
		if md, err := msg.Metadata(); err == nil {
			d.attempt = md.NumDelivered
		}
		if err := json.Unmarshal(msg.Data(), &d.request); err != nil {
			b.log.Error("dropping undecodable request", "err", err)
			_ = msg.Term()
			continue
		}
		return d, nil
	}
}

// QueueDepth reports the requests waiting for a worker and those a worker
// holds but has not finished.
func (b *Bus) QueueDepth(ctx context.Context) (waiting, inFlight int, err error) {
	info, err := b.work.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("request queue: %w", err)
	}
	return int(info.NumPending), info.NumAckPending, nil
}

// setupQueue creates the requests stream and the workers' consumer.
func (b *Bus) setupQueue(ctx context.Context) (err error) {
	if b.requests, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       requestsStream,
		Subjects:   []string{requestsSubj},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		Replicas:   b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", requestsStream, err)
	}
	b.work, err = b.js.CreateOrUpdateConsumer(ctx, requestsStream, jetstream.ConsumerConfig{
		Durable:       workersName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    b.cfg.MaxDeliver,
		MaxAckPending: 10000,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", workersName, err)
	}
	return nil
}
