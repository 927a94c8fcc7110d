// Cancels.
//
// KV bucket TC_CANCELS, subjects tc.cancel.<session>.<request>: a mark per
// answer a client asked to stop, kept a day; workers watch the bucket.

package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const (
	cancelBucket  = "TC_CANCELS"
	cancelPrefix  = "tc.cancel."
	cancelMarkTTL = 24 * time.Hour
)

func cancelKey(session, request string) string { return chat.AnswerKey(session, request) }

// Cancel asks for an answer to stop: a mark that a worker checks before it
// starts, and a live notice to the worker generating it.
func (b *Bus) Cancel(ctx context.Context, session, request string) error {
	if _, err := b.cancels.Put(ctx, cancelKey(session, request), []byte{1}); err != nil {
		return fmt.Errorf("mark %s cancelled: %w", request, err)
	}
	if err := b.nc.Publish(cancelPrefix+cancelKey(session, request), nil); err != nil {
		return fmt.Errorf("notify cancel of %s: %w", request, err)
	}
	return nil
}

// Cancelled reports whether an answer was asked to stop.
func (b *Bus) Cancelled(ctx context.Context, session, request string) (bool, error) {
	_, err := b.cancels.Get(ctx, cancelKey(session, request))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cancel mark of %s: %w", request, err)
	}
	return true, nil
}

// WatchCancels calls fn for every cancel notice until stop is called.
func (b *Bus) WatchCancels(fn func(session, request string)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(cancelPrefix+"*.*", func(m *nats.Msg) {
		key := strings.TrimPrefix(m.Subject, cancelPrefix)
		session, request, ok := strings.Cut(key, ".")
		if ok {
			fn(session, request)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch cancels: %w", err)
	}
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch cancels: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// setupCancels creates the cancels' bucket.
func (b *Bus) setupCancels(ctx context.Context) (err error) {
	b.cancels, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   cancelBucket,
		TTL:      cancelMarkTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", cancelBucket, err)
	}
	return nil
}
