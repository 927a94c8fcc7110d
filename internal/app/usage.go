package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
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
	// Budgets per principal (or "*": each) and model, per day or month.
	Budgets []billing.BudgetConfig `yaml:"budgets"`
	// OvershootTokens is how far past its budget an answer may stream
	// before it is stopped; BudgetChunkTokens how many tokens a streaming
	// call reserves at a time.
	OvershootTokens   int64 `yaml:"overshoot_tokens"`
	BudgetChunkTokens int64 `yaml:"budget_chunk_tokens"`
}

// budgetsConfig is the budgets part of the section.
func (e usageEntry) budgetsConfig() billing.BudgetsConfig {
	return billing.BudgetsConfig{Budgets: e.Budgets, OvershootTokens: e.OvershootTokens, ChunkTokens: e.BudgetChunkTokens}
}

// usage is the server's usage ledger: it prices each provider call and
// records it, folds records into rollups, and answers the usage query.
type usage struct {
	store   *bus.Usage
	prices  *billing.Prices
	budgets *billing.Budgets
	met     *metrics.Metrics
	stop    func()
}

var (
	_ orchestrator.UsageLedger = (*usage)(nil)
	_ orchestrator.Budgets     = (*usage)(nil)
	_ graph.UsageReader        = (*usage)(nil)
	_ graph.BudgetChecker      = (*usage)(nil)
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
	counters, err := s.bus.Budgets(ctx)
	if err != nil {
		return err
	}
	budgets, err := billing.NewBudgets(file.Usage.budgetsConfig(), prices, counters, time.Now)
	if err != nil {
		return fmt.Errorf("--config usage: %w", err)
	}
	u := &usage{store: store, prices: prices, budgets: budgets, met: s.met}
	u.stop, err = store.Fold(func(rec chat.UsageRecord) { s.met.UsageFolded(rec, prices.Currency()) })
	if err != nil {
		return err
	}
	s.usage = u
	return nil
}

// RecordUsage prices a provider call at the prices in force and records it.
func (u *usage) RecordUsage(ctx context.Context, rec chat.UsageRecord) (chat.UsageRecord, bool, error) {
	u.prices.Price(&rec)
	fresh, err := u.store.Record(ctx, rec)
	return rec, fresh, err
}

// NoteCall writes a provider call's note.
func (u *usage) NoteCall(oc chat.OpenCall) { u.store.Note(oc) }

// CloseCall deletes a recorded call's note.
func (u *usage) CloseCall(oc chat.OpenCall) { u.store.Close(oc) }

// OpenCalls lists the notes of an answer's calls still open.
func (u *usage) OpenCalls(ctx context.Context, session, request string) ([]chat.OpenCall, error) {
	return u.store.OpenCalls(ctx, session, request)
}

// Release settles what a lost call held against budgets.
func (u *usage) Release(ctx context.Context, held map[string]chat.Spent, rec chat.UsageRecord) error {
	return u.budgets.Release(ctx, held, rec)
}

// Hold begins a provider call's hold on its principal's budgets.
func (u *usage) Hold(principal, model string) orchestrator.BudgetHold {
	return u.budgets.Hold(principal, model)
}

// Chunk is how many tokens a streaming call reserves at a time.
func (u *usage) Chunk() int64 { return u.budgets.Chunk() }

// CheckBudget refuses an ask over its principal's budget.
func (u *usage) CheckBudget(ctx context.Context, principal, model string) (resetsAt time.Time, err error) {
	err = u.budgets.Check(ctx, principal, model)
	if e, ok := errors.AsType[*billing.Exceeded](err); ok {
		return e.ResetsAt, nil
	}
	return time.Time{}, err
}

// reload reads the usage section of the config file again: prices and
// budgets change without a restart; a file that does not read keeps the
// ones in force.
func (u *usage) reload(file modelFile) error {
	if err := u.prices.Set(file.Usage.Currency, file.Usage.Prices); err != nil {
		return fmt.Errorf("--config usage: %w", err)
	}
	if err := u.budgets.Set(file.Usage.budgetsConfig()); err != nil {
		return fmt.Errorf("--config usage: %w", err)
	}
	return nil
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

// reloadOnHangup reads the config file's usage section again on each
// SIGHUP, until stop is called.
func (s *server) reloadOnHangup() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				s.reloadUsage()
			}
		}
	})
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}
}

// reloadUsage reads the prices and budgets of the config file again.
func (s *server) reloadUsage() {
	path := s.cfg.Providers.ConfigFile
	file, err := readConfigFile(path, s.log)
	if err == nil {
		err = s.usage.reload(file)
	}
	if err != nil {
		s.log.Error("reload the config file's usage section; the prices and budgets in force stay", "file", path, "err", err)
		return
	}
	s.log.Info("reloaded the config file's prices and budgets", "file", path, "prices", len(file.Usage.Prices), "budgets", len(file.Usage.Budgets))
}
