// Package billing prices provider calls and holds principals to their
// budgets: the prices per model, the cost of a call in exact decimal
// arithmetic (chat.Money), and the budgets an ask is checked against.
package billing

import (
	"fmt"
	"sync/atomic"

	"github.com/tokencast/tokencast/internal/chat"
)

// Price is what a model's tokens cost, in picos per token.
type Price struct {
	Input, Output, CachedInput, CacheWrite, Reasoning int64
}

// PriceConfig is a model's price per million tokens, as decimals with at
// most six decimals (so a token costs a whole number of picos). Empty
// CachedInput and CacheWrite cost as Input, empty Reasoning as Output.
type PriceConfig struct {
	Input       string `yaml:"input"`
	Output      string `yaml:"output"`
	CachedInput string `yaml:"cached_input"`
	CacheWrite  string `yaml:"cache_write"`
	Reasoning   string `yaml:"reasoning"`
}

// perToken reads a price per million tokens as picos per token.
func perToken(s, fallback string) (int64, error) {
	if s == "" {
		s = fallback
	}
	if s == "" {
		return 0, nil
	}
	m, err := chat.ParseMoney(s, 6)
	if err != nil {
		return 0, err
	}
	v, ok := m.Int64()
	if !ok || v/1_000_000 > 1<<40 {
		return 0, fmt.Errorf("%q is too large a price", s)
	}
	return v / 1_000_000, nil // exact: six decimals at most
}

// Parse reads a model's price.
func (c PriceConfig) Parse() (Price, error) {
	var p Price
	var err error
	for _, f := range []struct {
		dst           *int64
		val, fallback string
		name          string
	}{
		{&p.Input, c.Input, "", "input"},
		{&p.Output, c.Output, "", "output"},
		{&p.CachedInput, c.CachedInput, c.Input, "cached_input"},
		{&p.CacheWrite, c.CacheWrite, c.Input, "cache_write"},
		{&p.Reasoning, c.Reasoning, c.Output, "reasoning"},
	} {
		if *f.dst, err = perToken(f.val, f.fallback); err != nil {
			return Price{}, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return p, nil
}

// Cost is what usage costs at price p, in picos. Cached and cache-write
// tokens are part of the input tokens, reasoning tokens part of the output
// tokens (chat.Usage), each priced at its own rate.
func (p Price) Cost(u chat.Usage) int64 {
	cached := int64(u.CacheReadTokens)
	written := int64(u.CacheWriteTokens)
	plainIn := max(int64(u.InputTokens)-cached-written, 0)
	reasoning := int64(u.ReasoningTokens)
	plainOut := max(int64(u.OutputTokens)-reasoning, 0)
	return plainIn*p.Input + cached*p.CachedInput + written*p.CacheWrite + plainOut*p.Output + reasoning*p.Reasoning
}

// Prices are the prices of the models by "provider:model-id", in one
// currency. They may be replaced while the server runs (a reload).
type Prices struct {
	table atomic.Pointer[priceTable]
}

type priceTable struct {
	currency string
	byModel  map[string]Price
}

// NewPrices reads prices per million tokens, by model.
func NewPrices(currency string, byModel map[string]PriceConfig) (*Prices, error) {
	p := &Prices{}
	if err := p.Set(currency, byModel); err != nil {
		return nil, err
	}
	return p, nil
}

// Set replaces the prices; on error the old ones stay.
func (p *Prices) Set(currency string, byModel map[string]PriceConfig) error {
	if currency == "" {
		currency = "USD"
	}
	t := &priceTable{currency: currency, byModel: make(map[string]Price, len(byModel))}
	for model, c := range byModel {
		price, err := c.Parse()
		if err != nil {
			return fmt.Errorf("price of %s: %w", model, err)
		}
		t.byModel[model] = price
	}
	p.table.Store(t)
	return nil
}

// Currency is what costs are counted in.
func (p *Prices) Currency() string { return p.table.Load().currency }

// Price prices a record: its cost and whether its model has a price.
func (p *Prices) Price(rec *chat.UsageRecord) {
	price, ok := p.table.Load().byModel[rec.Model]
	rec.Priced = ok
	rec.CostPicos = 0
	if ok {
		rec.CostPicos = price.Cost(rec.Usage)
	}
}

// Priced reports whether a model has a price.
func (p *Prices) Priced(model string) bool {
	_, ok := p.table.Load().byModel[model]
	return ok
}
