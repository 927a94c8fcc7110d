package chat

import "context"

// BudgetCounters keep what each principal spent against each budget in
// each period, shared by every worker.
type BudgetCounters interface {
	// Spent is what was spent under key.
	Spent(ctx context.Context, key string) (Spent, error)
	// AddSpent adds d under key if fits says the new total fits, and
	// reports whether it did; fits nil always fits.
	AddSpent(ctx context.Context, key string, d Spent, fits func(Spent) bool) (bool, error)
}

// Spent is spending against a budget: tokens, and cost in picos.
type Spent struct {
	Tokens    int64 `json:"tokens"`
	CostPicos int64 `json:"costPicos"`
}
