package billing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// counters is an in-memory Counters.
type counters struct {
	mu sync.Mutex
	m  map[string]Spent
}

func (c *counters) Spent(_ context.Context, key string) (Spent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key], nil
}

func (c *counters) AddSpent(_ context.Context, key string, d Spent, fits func(Spent) bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := Spent{Tokens: c.m[key].Tokens + d.Tokens, CostPicos: c.m[key].CostPicos + d.CostPicos}
	if fits != nil && !fits(next) {
		return false, nil
	}
	c.m[key] = next
	return true, nil
}

func TestBudgetsHoldEachPrincipalAndModel(t *testing.T) {
	ctx := context.Background()
	prices, err := NewPrices("EUR", map[string]PriceConfig{"openai:gpt": {Input: "1", Output: "2"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	c := &counters{m: map[string]Spent{}}
	b, err := NewBudgets(BudgetsConfig{Budgets: []BudgetConfig{
		{Principal: "*", Period: "day", Tokens: 100},
		{Principal: "key:alice", Model: "openai:gpt", Period: "month", Cost: "0.0001"},
	}, OvershootTokens: 10}, prices, c, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	// Alice's gpt calls fall under both: 0.0001 is 50 output tokens
	// (plus 10 of overshoot at the output price).
	h := b.Hold("key:alice", "openai:gpt")
	if ok, err := h.Reserve(ctx, 0, 60); !ok || err != nil {
		t.Fatalf("60 output tokens within 50 + 10 of overshoot: %v %v", ok, err)
	}
	if ok, _ := h.Reserve(ctx, 0, 1); ok {
		t.Fatal("a token past the cost budget and its overshoot was held")
	}
	if err := h.Settle(ctx, chat.UsageRecord{Usage: chat.Usage{OutputTokens: 55, TotalTokens: 55}, CostPicos: 55 * 2_000_000}); err != nil {
		t.Fatal(err)
	}
	var ex *Exceeded
	if err := b.Check(ctx, "key:alice", "openai:gpt"); !errors.As(err, &ex) || !ex.ResetsAt.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("alice over her monthly cost: %v", err)
	}
	// Her other models only count against the daily tokens (55 of 100);
	// bob has budgets of his own.
	if err := b.Check(ctx, "key:alice", "demo:default"); err != nil {
		t.Fatalf("alice with another model: %v", err)
	}
	if ok, _ := b.Hold("key:bob", "demo:default").Reserve(ctx, 100, 10); !ok {
		t.Fatal("bob could not hold his own 110 tokens")
	}
	if err := b.Check(ctx, "key:bob", "demo:default"); !errors.As(err, &ex) {
		t.Fatalf("bob over his daily tokens: %v", err)
	}
	// A reload that raises the limit keeps what was spent.
	if err := b.Set(BudgetsConfig{Budgets: []BudgetConfig{{Principal: "*", Period: "day", Tokens: 111}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx, "key:bob", "demo:default"); err != nil {
		t.Fatalf("bob after the raise: %v", err)
	}
	for _, bad := range []BudgetConfig{
		{Principal: "*", Period: "week", Tokens: 1},
		{Principal: "*", Period: "day"},
		{Principal: "*", Period: "day", Tokens: 1, Cost: "1"},
		{Period: "day", Tokens: 1},
	} {
		if err := b.Set(BudgetsConfig{Budgets: []BudgetConfig{bad}}); err == nil {
			t.Errorf("budget %+v was accepted", bad)
		}
	}
}

// A hold its worker did not live to settle is released from what it held,
// as noted, to what its call is recorded to have cost; the other holds on
// the same counters are left as they are.
func TestReleaseSettlesAHoldFromItsNote(t *testing.T) {
	ctx := context.Background()
	prices, err := NewPrices("EUR", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &counters{m: map[string]Spent{}}
	b, err := NewBudgets(BudgetsConfig{Budgets: []BudgetConfig{{Principal: "*", Period: "day", Tokens: 1000}}}, prices, c, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	lost, alive := b.Hold("key:alice", "m"), b.Hold("key:alice", "m")
	for _, h := range []*Hold{lost, alive} {
		if ok, err := h.Reserve(ctx, 20, 64); !ok || err != nil {
			t.Fatalf("reserve: %v %v", ok, err)
		}
	}
	held := lost.Held()
	if len(held) != 1 {
		t.Fatalf("held %+v, want one counter", held)
	}
	var key string
	for k := range held {
		key = k
	}
	if c.m[key].Tokens != 168 {
		t.Fatalf("spent %d, want both holds' 84", c.m[key].Tokens)
	}
	// The lost call is counted at 20 in and 10 out.
	if err := b.Release(ctx, held, chat.UsageRecord{Usage: chat.Usage{InputTokens: 20, OutputTokens: 10, TotalTokens: 30}}); err != nil {
		t.Fatal(err)
	}
	if c.m[key].Tokens != 114 || held[key].Tokens != 84 {
		t.Fatalf("spent %d (want 30 + the live hold's 84), note now %+v (want it untouched)", c.m[key].Tokens, held)
	}
}
