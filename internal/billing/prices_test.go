package billing

import (
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestCostPricesEachKindOfToken(t *testing.T) {
	p, err := NewPrices("", map[string]PriceConfig{
		"anthropic:claude": {Input: "3", Output: "15", CachedInput: "0.3", CacheWrite: "3.75"},
		"openai:o3":        {Input: "2", Output: "8", Reasoning: "8.000001"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Currency() != "USD" {
		t.Fatalf("currency %s, want USD by default", p.Currency())
	}
	for _, tc := range []struct {
		model string
		usage chat.Usage
		want  string
	}{
		// 1000 plain input, 2000 cache read, 500 cache write; 400 output.
		{"anthropic:claude", chat.Usage{InputTokens: 3500, CacheReadTokens: 2000, CacheWriteTokens: 500, OutputTokens: 400}, "0.011475"},
		// 300 output of which 100 reasoning.
		{"openai:o3", chat.Usage{InputTokens: 1_000_000, OutputTokens: 300, ReasoningTokens: 100}, "2.0024000001"},
	} {
		rec := chat.UsageRecord{Model: tc.model, Usage: tc.usage}
		p.Price(&rec)
		if !rec.Priced || chat.Picos(rec.CostPicos).String() != tc.want {
			t.Errorf("%s %+v costs %s (priced %v), want %s", tc.model, tc.usage, chat.Picos(rec.CostPicos), rec.Priced, tc.want)
		}
	}
	rec := chat.UsageRecord{Model: "demo:default", Usage: chat.Usage{InputTokens: 5}}
	p.Price(&rec)
	if rec.Priced || rec.CostPicos != 0 {
		t.Fatalf("a model without a price: %+v", rec)
	}
	if _, err := NewPrices("USD", map[string]PriceConfig{"m": {Input: "0.0000001"}}); err == nil {
		t.Fatal("a price with seven decimals was accepted")
	}
}
