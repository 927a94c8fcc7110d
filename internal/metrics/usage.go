package metrics

import (
	"math/big"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns the usage counters: tokens and cost of provider calls by
// model and principal, counted on the node that folds each usage record
// into the rollups (once per record in the whole cluster: sum the nodes).
//
// Their labels are bounded: a model is its own label only if the server
// knows it (a configured model), a principal only if it is named in
// usage.metrics_principals, or, when none are named, if it is one of the
// first MaxUsagePrincipals this process has seen; every other one counts
// under "other".

// MaxUsagePrincipals bounds the principal label when none are named.
const MaxUsagePrincipals = 100

// otherLabel stands for every value past the bound.
const otherLabel = "other"

// UsageLabels bounds the usage counters' labels.
type UsageLabels struct {
	// Models are the models that get a label of their own.
	Models []string
	// Principals, when not empty, are the principals that get a label of
	// their own; when empty, the first MaxUsagePrincipals seen do.
	Principals []string
}

type usageCounters struct {
	tokens *prometheus.CounterVec
	cost   *prometheus.CounterVec
	calls  *prometheus.CounterVec

	mu         sync.Mutex
	models     map[string]bool
	principals map[string]bool
	fixed      bool // principals are the named ones, none is added
}

// CountUsage registers the usage counters with their label bounds.
func (m *Metrics) CountUsage(l UsageLabels) {
	u := &usageCounters{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokencast_usage_tokens_total",
			Help: "Tokens of provider calls, by model, principal and kind (input, output, reasoning, cache_read, cache_write); reasoning is part of output, cache counts part of input.",
		}, []string{"model", "principal", "kind"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokencast_usage_cost_total",
			Help: "Cost of provider calls in the configured currency, by model and principal (a float view of the exact sums the usage query returns).",
		}, []string{"model", "principal", "currency"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokencast_usage_calls_total",
			Help: "Provider calls recorded, by model, principal and whether their counts are the provider's or an estimate.",
		}, []string{"model", "principal", "counts"}),
		models:     make(map[string]bool),
		principals: make(map[string]bool),
		fixed:      len(l.Principals) > 0,
	}
	for _, name := range l.Models {
		u.models[name] = true
	}
	for _, p := range l.Principals {
		u.principals[p] = true
	}
	m.reg.MustRegister(u.tokens, u.cost, u.calls)
	m.usage = u
}

// labels bounds a record's model and principal.
func (u *usageCounters) labels(model, principal string) (string, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.models[model] {
		model = otherLabel
	}
	if !u.principals[principal] {
		if u.fixed || len(u.principals) >= MaxUsagePrincipals {
			principal = otherLabel
		} else {
			u.principals[principal] = true
		}
	}
	return model, principal
}

// UsageFolded counts a usage record, in currency.
func (m *Metrics) UsageFolded(rec chat.UsageRecord, currency string) {
	u := m.usage
	if u == nil {
		return
	}
	model, principal := u.labels(rec.Model, rec.Principal)
	for kind, n := range map[string]int{
		"input": rec.Usage.InputTokens, "output": rec.Usage.OutputTokens, "reasoning": rec.Usage.ReasoningTokens,
		"cache_read": rec.Usage.CacheReadTokens, "cache_write": rec.Usage.CacheWriteTokens,
	} {
		if n > 0 {
			u.tokens.WithLabelValues(model, principal, kind).Add(float64(n))
		}
	}
	counts := "reported"
	if rec.Estimated {
		counts = "estimated"
	}
	u.calls.WithLabelValues(model, principal, counts).Inc()
	if rec.CostPicos > 0 {
		f, _ := new(big.Rat).SetFrac64(rec.CostPicos, 1_000_000_000_000).Float64()
		u.cost.WithLabelValues(model, principal, currency).Add(f)
	}
}
