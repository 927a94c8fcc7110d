package app

import (
	"context"
	"fmt"
	"time"

	"github.com/tokencast/tokencast/internal/billing"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/metrics"
	"github.com/tokencast/tokencast/internal/orchestrator"
)

// usageEntry is the config file's usage section (docs/usage.md).
type usageEntry struct {
	// Currency costs are counted in; USD when empty.
	Currency string `yaml:"currency"`
	// Prices per million tokens, by "provider:model-id".
	Prices map[string]billing.PriceConfig `yaml:"prices"`
	// MetricsPrincipals get a principal label of their own in the usage
	// metrics; when empty, the first 100 seen by a process do.
	MetricsPrincipals []string `yaml:"metrics_principals"`
}

// usage is the server's usage ledger: it prices each provider call and
// records it, folds records into rollups, and answers the usage query.
type usage struct {
	store  *bus.Usage
	prices *billing.Prices
	met    *metrics.Metrics
	stop   func()
}

var (
	_ orchestrator.UsageLedger = (*usage)(nil)
	_ graph.UsageReader        = (*usage)(nil)
)

// buildUsage sets up the usage store and prices, and starts folding
// records into rollups (every node does; one record at a time is folded).
func (s *server) buildUsage(ctx context.Context, file modelFile, models []string) error {
	store, err := s.bus.Usage(ctx)
	if err != nil {
		return err
	}
	prices, err := billing.NewPrices(file.Usage.Currency, file.Usage.Prices)
	if err != nil {
		return fmt.Errorf("--config usage: %w", err)
	}
	for model := range file.Usage.Prices {
		models = append(models, model)
	}
	s.met.CountUsage(metrics.UsageLabels{Models: models, Principals: file.Usage.MetricsPrincipals})
	u := &usage{store: store, prices: prices, met: s.met}
	u.stop, err = store.Fold(func(rec chat.UsageRecord) { s.met.UsageFolded(rec, prices.Currency()) })
	if err != nil {
		return err
	}
	s.usage = u
	return nil
}

// RecordUsage prices a provider call at the prices in force and records it.
func (u *usage) RecordUsage(ctx context.Context, rec chat.UsageRecord) error {
	u.prices.Price(&rec)
	return u.store.Record(ctx, rec)
}

// Rollups are the sums of the days from to to, of one principal or all.
func (u *usage) Rollups(ctx context.Context, from, to time.Time, principal string) ([]chat.UsageRollup, error) {
	return u.store.Rollups(ctx, from, to, principal)
}

// Pending counts records not in the rollups yet.
func (u *usage) Pending(ctx context.Context) (uint64, error) { return u.store.Pending(ctx) }

// Currency is what costs are counted in.
func (u *usage) Currency() string { return u.prices.Currency() }

// Priced reports whether a model has a price.
func (u *usage) Priced(model string) bool { return u.prices.Priced(model) }

func (u *usage) close() {
	if u != nil && u.stop != nil {
		u.stop()
	}
}
