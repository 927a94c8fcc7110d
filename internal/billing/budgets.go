package billing

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns budgets: how many tokens, or how much money, a principal
// may spend per day or month, with one model or all. A budget's spending
// is a counter per period (Counters); a provider call holds tokens against
// every budget it falls under before it spends them, chunk by chunk as it
// streams (Hold), and settles to what it cost once it ends.
//
// Why it holds mid-stream: every call reserves before it consumes, and a
// reservation succeeds only while the counter stays within the budget and
// its overshoot, so the counters of all the answers of a principal in
// flight, on every worker, never pass budget+overshoot together. What can
// still go past: the chunk of text that found the budget spent (one
// provider chunk per answer in flight), and the difference between the
// estimate a stream is held by (a token per 4 characters) and what the
// provider reports at the end. docs/usage.md states the bound.

// Counters keep what was spent against each budget in each period.
type Counters = chat.BudgetCounters

// Spent is spending against a budget.
type Spent = chat.Spent

// BudgetConfig is a budget as the config file says it.
type BudgetConfig struct {
	// Principal is a principal's id ("key:alice", "user:bob"), or "*":
	// each principal, on its own.
	Principal string `yaml:"principal"`
	// Model, "provider:model-id", limits the budget to that model's
	// calls; empty counts every model.
	Model string `yaml:"model"`
	// Period is "day" or "month" (UTC).
	Period string `yaml:"period"`
	// Tokens or Cost (a decimal in the currency) is the limit; one of
	// the two.
	Tokens int64  `yaml:"tokens"`
	Cost   string `yaml:"cost"`
}

// budget is a budget ready to check.
type budget struct {
	id        string // stable across reloads while principal, model and period stay
	principal string
	model     string
	month     bool
	tokens    int64 // 0 when the budget is a cost
	costPicos int64
	overshoot Spent
}

// window is the period now falls in.
func (b budget) window(now time.Time) (start, end time.Time) {
	now = now.UTC()
	if b.month {
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 0, 1)
}

// key names the counter of principal in the period now falls in.
func (b budget) key(principal string, now time.Time) string {
	start, _ := b.window(now)
	return b.id + "." + base64.RawURLEncoding.EncodeToString([]byte(principal)) + "." + start.Format("20060102")
}

func (b budget) appliesTo(principal, model string) bool {
	return (b.principal == "*" || b.principal == principal) && (b.model == "" || b.model == model)
}

// over reports whether s has reached the budget.
func (b budget) over(s Spent) bool {
	if b.tokens > 0 {
		return s.Tokens >= b.tokens
	}
	return s.CostPicos >= b.costPicos
}

// fits reports whether s stays within the budget and its overshoot.
func (b budget) fits(s Spent) bool {
	if b.tokens > 0 {
		return s.Tokens <= b.tokens+b.overshoot.Tokens
	}
	return s.CostPicos <= b.costPicos+b.overshoot.CostPicos
}

// BudgetsConfig is the config file's budgets and how tightly they hold.
type BudgetsConfig struct {
	Budgets []BudgetConfig
	// OvershootTokens is how far past a token budget a streaming answer
	// may go before it is stopped (a cost budget: that many tokens at the
	// model's output price).
	OvershootTokens int64
	// ChunkTokens is how many tokens a streaming call reserves at a time.
	ChunkTokens int64
}

// Budgets holds principals to their budgets. The budgets may be replaced
// while the server runs (a reload).
type Budgets struct {
	counters Counters
	prices   *Prices
	now      func() time.Time
	set      atomic.Pointer[budgetSet]
}

type budgetSet struct {
	list      []budget
	overshoot int64
	chunk     int64
}

// NewBudgets reads the budgets.
func NewBudgets(cfg BudgetsConfig, prices *Prices, counters Counters, now func() time.Time) (*Budgets, error) {
	b := &Budgets{counters: counters, prices: prices, now: now}
	if err := b.Set(cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// Set replaces the budgets; on error the old ones stay. Counters are kept
// across a change of limit: a budget is the same while its principal,
// model and period are.
func (b *Budgets) Set(cfg BudgetsConfig) error {
	s := &budgetSet{overshoot: max(cfg.OvershootTokens, 0), chunk: cfg.ChunkTokens}
	if s.chunk <= 0 {
		s.chunk = 64
	}
	for i, c := range cfg.Budgets {
		bu := budget{principal: c.Principal, model: c.Model}
		switch c.Period {
		case "day":
		case "month":
			bu.month = true
		default:
			return fmt.Errorf("budget %d: period %q is not day or month", i+1, c.Period)
		}
		if c.Principal == "" {
			return fmt.Errorf("budget %d: no principal (a principal's id, or \"*\" for each)", i+1)
		}
		switch {
		case c.Tokens > 0 && c.Cost == "":
			bu.tokens = c.Tokens
		case c.Tokens == 0 && c.Cost != "":
			m, err := chat.ParseMoney(c.Cost, 12)
			if err != nil {
				return fmt.Errorf("budget %d: cost: %w", i+1, err)
			}
			v, ok := m.Int64()
			if !ok || v <= 0 {
				return fmt.Errorf("budget %d: cost %q is not a positive amount", i+1, c.Cost)
			}
			bu.costPicos = v
		default:
			return fmt.Errorf("budget %d: give tokens or cost, one of the two", i+1)
		}
		sum := sha256.Sum256([]byte(c.Principal + "\x00" + c.Model + "\x00" + c.Period))
		bu.id = "b" + hex.EncodeToString(sum[:6])
		s.list = append(s.list, bu)
	}
	b.set.Store(s)
	return nil
}

// overshoot is the room past a budget, in its own unit, for a model.
func (b *Budgets) overshoot(s *budgetSet, model string) Spent {
	price := b.prices.table.Load().byModel[model]
	return Spent{Tokens: s.overshoot, CostPicos: s.overshoot * price.Output}
}

// Exceeded is an ask refused because a budget is spent.
type Exceeded struct {
	// ResetsAt is when the budget's period ends.
	ResetsAt time.Time
}

func (e *Exceeded) Error() string {
	return chat.CodeBudgetExceeded + ": the budget is spent until " + e.ResetsAt.Format(time.RFC3339)
}

// Check refuses an ask of principal with model when one of its budgets is
// spent, with the latest reset of those.
func (b *Budgets) Check(ctx context.Context, principal, model string) error {
	s := b.set.Load()
	now := b.now()
	var refused *Exceeded
	for _, bu := range s.list {
		if !bu.appliesTo(principal, model) {
			continue
		}
		spent, err := b.counters.Spent(ctx, bu.key(principal, now))
		if err != nil {
			return fmt.Errorf("read budget: %w", err)
		}
		if bu.over(spent) {
			_, end := bu.window(now)
			if refused == nil || end.After(refused.ResetsAt) {
				refused = &Exceeded{ResetsAt: end}
			}
		}
	}
	if refused != nil {
		return refused
	}
	return nil
}

// Hold is one provider call's hold on its principal's budgets: what it has
// reserved, under which counters.
type Hold struct {
	b         *Budgets
	principal string
	model     string
	mu        sync.Mutex
	held      map[string]Spent // by counter key
	budgets   map[string]budget
}

// Hold begins a provider call's hold; it holds nothing yet. A principal
// without budgets is never refused, and costs no round trip.
func (b *Budgets) Hold(principal, model string) *Hold {
	s := b.set.Load()
	now := b.now()
	h := &Hold{b: b, principal: principal, model: model}
	for _, bu := range s.list {
		if bu.appliesTo(principal, model) {
			if h.budgets == nil {
				h.budgets, h.held = map[string]budget{}, map[string]Spent{}
			}
			bu.overshoot = b.overshoot(s, model)
			h.budgets[bu.key(principal, now)] = bu
		}
	}
	return h
}

// Chunk is how many tokens a streaming call reserves at a time.
func (b *Budgets) Chunk() int64 { return b.set.Load().chunk }

// ErrOverBudget says a reservation did not fit a budget.
var ErrOverBudget = errors.New("over budget")

// Reserve holds input and output tokens more against every budget of the
// call; false when one has no room for them (nothing more is held then).
func (h *Hold) Reserve(ctx context.Context, input, output int64) (bool, error) {
	if len(h.budgets) == 0 {
		return true, nil
	}
	price := h.b.prices.table.Load().byModel[h.model]
	d := Spent{Tokens: input + output, CostPicos: input*price.Input + output*price.Output}
	h.mu.Lock()
	defer h.mu.Unlock()
	var taken []string
	for key, bu := range h.budgets {
		ok, err := h.b.counters.AddSpent(ctx, key, d, bu.fits)
		if err == nil && !ok {
			err = ErrOverBudget
		}
		if err != nil {
			// Give back what this reservation took from the others.
			for _, k := range taken {
				_, _ = h.b.counters.AddSpent(context.WithoutCancel(ctx), k, Spent{Tokens: -d.Tokens, CostPicos: -d.CostPicos}, nil)
			}
			if errors.Is(err, ErrOverBudget) {
				return false, nil
			}
			return false, fmt.Errorf("reserve budget: %w", err)
		}
		taken = append(taken, key)
	}
	for _, k := range taken {
		s := h.held[k]
		h.held[k] = Spent{Tokens: s.Tokens + d.Tokens, CostPicos: s.CostPicos + d.CostPicos}
	}
	return true, nil
}

// Settle replaces what the call held with what it cost.
func (h *Hold) Settle(ctx context.Context, rec chat.UsageRecord) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for key := range h.budgets {
		h.held[key] = h.held[key] // a budget it held nothing under yet
	}
	return h.b.settle(ctx, h.held, rec)
}

// Held is what the call holds, by counter key: a copy, to be handed to
// Release should the call's worker die before it settles.
func (h *Hold) Held() map[string]Spent {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		return nil
	}
	return maps.Clone(h.held)
}

// Release settles a hold its call's worker did not live to settle: what it
// held (Held, as noted) is replaced with what the call is recorded to have
// cost.
func (b *Budgets) Release(ctx context.Context, held map[string]Spent, rec chat.UsageRecord) error {
	return b.settle(ctx, maps.Clone(held), rec)
}

// settle replaces, under each counter key, what held says is held with
// rec's cost, and keeps the new figure in held.
func (b *Budgets) settle(ctx context.Context, held map[string]Spent, rec chat.UsageRecord) error {
	var errs []error
	cost := Spent{Tokens: int64(rec.Usage.TotalTokens), CostPicos: rec.CostPicos}
	for key, s := range held {
		d := Spent{Tokens: cost.Tokens - s.Tokens, CostPicos: cost.CostPicos - s.CostPicos}
		if d == (Spent{}) {
			continue
		}
		if _, err := b.counters.AddSpent(ctx, key, d, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		held[key] = cost
	}
	return errors.Join(errs...)
}
