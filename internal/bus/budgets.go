// Budgets: what each principal spent against each budget in each period.
//
// KV bucket TC_BUDGETS, one key per budget, principal and period
// (<budget>.<principal base64url>.<period start YYYYMMDD>), kept 40 days
// after its last change (a month's counter outlives its month). Updates
// are compare-and-set, so the reservations of every worker add up.

package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

const budgetBucket = "TC_BUDGETS"

// Budgets keeps budget counters.
type Budgets struct {
	b  *Bus
	kv jetstream.KeyValue
}

var _ chat.BudgetCounters = (*Budgets)(nil)

// Budgets sets up the budget counters' bucket.
func (b *Bus) Budgets(ctx context.Context) (*Budgets, error) {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   budgetBucket,
		TTL:      40 * 24 * time.Hour,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", budgetBucket, err)
	}
	return &Budgets{b: b, kv: kv}, nil
}

// Spent is what was spent under key.
func (c *Budgets) Spent(ctx context.Context, key string) (chat.Spent, error) {
	s, _, err := c.get(ctx, key)
	return s, err
}

func (c *Budgets) get(ctx context.Context, key string) (chat.Spent, uint64, error) {
	var s chat.Spent
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s, 0, nil
	}
	if err != nil {
		return s, 0, fmt.Errorf("read budget %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return s, 0, fmt.Errorf("decode budget %s: %w", key, err)
	}
	return s, e.Revision(), nil
}

// AddSpent adds d under key if the new total fits.
func (c *Budgets) AddSpent(ctx context.Context, key string, d chat.Spent, fits func(chat.Spent) bool) (bool, error) {
	for {
		cur, rev, err := c.get(ctx, key)
		if err != nil {
			return false, err
		}
		next := chat.Spent{Tokens: cur.Tokens + d.Tokens, CostPicos: cur.CostPicos + d.CostPicos}
		if fits != nil && !fits(next) {
			return false, nil
		}
		data, _ := json.Marshal(next)
		if rev == 0 {
			_, err = c.kv.Create(ctx, key, data)
		} else {
			_, err = c.kv.Update(ctx, key, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue // another reservation came first: read it again
		}
		if err != nil {
			return false, fmt.Errorf("write budget %s: %w", key, err)
		}
		return true, nil
	}
}
