// Budgets: what each principal spent against each budget in each period.
//
// KV bucket TC_BUDGETS, one key per budget, principal and period
// (<budget>.<principal base64url>.<period start YYYYMMDD>), kept 40 days
// after its last change (a month's counter outlives its month). Updates
// are compare-and-set, so the reservations of every worker add up.

package bus

import (
	"context"
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

// Budgets sets up the budget counters' bucket, riding out a cluster that
// is still electing its leaders.
func (b *Bus) Budgets(ctx context.Context) (*Budgets, error) {
	var kv jetstream.KeyValue
	err := b.retrying(ctx, "set up budgets", func() (err error) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   budgetBucket,
			TTL:      40 * 24 * time.Hour,
			Storage:  jetstream.FileStorage,
			Replicas: b.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", budgetBucket, err)
	}
	return &Budgets{b: b, kv: kv}, nil
}

// Spent is what was spent under key.
func (c *Budgets) Spent(ctx context.Context, key string) (chat.Spent, error) {
	var s chat.Spent
	_, err := getJSON(ctx, c.kv, key, &s)
	if err != nil {
		return s, fmt.Errorf("budget: %w", err)
	}
	return s, nil
}

// AddSpent adds d under key if the new total fits.
func (c *Budgets) AddSpent(ctx context.Context, key string, d chat.Spent, fits func(chat.Spent) bool) (bool, error) {
	ok, err := updateJSON(ctx, c.kv, key, func(cur *chat.Spent) bool {
		next := chat.Spent{Tokens: cur.Tokens + d.Tokens, CostPicos: cur.CostPicos + d.CostPicos}
		if fits != nil && !fits(next) {
			return false
		}
		*cur = next
		return true
	})
	if err != nil {
		return false, fmt.Errorf("budget: %w", err)
	}
	return ok, nil
}
