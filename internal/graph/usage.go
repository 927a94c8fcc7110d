package graph

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
)

// UsageReader is what the usage query reads: the rollups of provider
// calls by day, principal and model.
type UsageReader interface {
	Rollups(ctx context.Context, from, to time.Time, principal string) ([]chat.UsageRollup, error)
	// Pending counts calls recorded but not in the rollups yet.
	Pending(ctx context.Context) (uint64, error)
	Currency() string
}

// BudgetChecker refuses an ask whose principal's budget is spent.
type BudgetChecker interface {
	// CheckBudget returns when the spent budget resets, zero when none is.
	CheckBudget(ctx context.Context, principal, model string) (resetsAt time.Time, err error)
}

// overBudget refuses an ask with BUDGET_EXCEEDED, saying when the budget
// resets (resetsAt, ISO-8601; retryAfter, seconds).
func (r *Resolver) overBudget(ctx context.Context, principal, modelName string) *gqlerror.Error {
	if r.Budgets == nil {
		return nil
	}
	ref := modelName
	if r.ModelRef != nil {
		ref = r.ModelRef(modelName)
	}
	resets, err := r.Budgets.CheckBudget(ctx, principal, ref)
	if err != nil {
		r.Log.Error("check budget", "principal", principal, "model", ref, "err", err)
		return codeError(ctx, chat.CodeUnavailable, "could not check the budget, try again")
	}
	if resets.IsZero() {
		return nil
	}
	e := codeError(ctx, chat.CodeBudgetExceeded, "the budget is spent until "+resets.UTC().Format(time.RFC3339))
	e.Extensions["resetsAt"] = resets.UTC().Format(time.RFC3339)
	e.Extensions["retryAfter"] = int(time.Until(resets)/time.Second) + 1
	return e
}

// maxUsageDays bounds the range of one usage query.
const maxUsageDays = 400

// usage answers the usage query: a service sees everyone's usage, anyone
// else their own.
func (r *Resolver) usage(ctx context.Context, from, to string, principal *string, by []model.UsageDimension) (*model.UsageReport, error) {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil, codeError(ctx, chat.CodeUnauthenticated, "an API key or token is required")
	}
	if r.Usage == nil {
		return nil, codeError(ctx, chat.CodeUnavailable, "this server keeps no usage")
	}
	who := ""
	if principal != nil {
		who = *principal
	}
	if !p.IsService() {
		if who != "" && who != p.ID {
			return nil, codeError(ctx, chat.CodeForbidden, "only a service key may see another principal's usage")
		}
		who = p.ID
	}
	start, err1 := time.Parse(chat.DayLayout, from)
	end, err2 := time.Parse(chat.DayLayout, to)
	switch {
	case err1 != nil || err2 != nil:
		return nil, codeError(ctx, chat.CodeBadInput, "from and to must be days as YYYY-MM-DD")
	case end.Before(start):
		return nil, codeError(ctx, chat.CodeBadInput, "to must not be before from")
	case end.Sub(start) >= maxUsageDays*24*time.Hour:
		return nil, codeError(ctx, chat.CodeBadInput, "a usage range spans at most 400 days")
	}
	pending, err := r.Usage.Pending(ctx)
	if err != nil {
		r.Log.Error("read usage", "err", err)
		return nil, codeError(ctx, chat.CodeUnavailable, "could not read the usage, try again")
	}
	rollups, err := r.Usage.Rollups(ctx, start, end, who)
	if err != nil {
		r.Log.Error("read usage", "err", err)
		return nil, codeError(ctx, chat.CodeUnavailable, "could not read the usage, try again")
	}
	return usageReport(from, to, r.Usage.Currency(), rollups, by, pending), nil
}

// usageReport sums rollups into the rows of the dimensions asked for.
func usageReport(from, to, currency string, rollups []chat.UsageRollup, by []model.UsageDimension, pending uint64) *model.UsageReport {
	type rowKey struct{ principal, model, day string }
	var total chat.UsageTotals
	rows := map[rowKey]*chat.UsageTotals{}
	for _, ru := range rollups {
		total.Add(ru.Totals)
		var k rowKey
		for _, d := range by {
			switch d {
			case model.UsageDimensionPrincipal:
				k.principal = ru.Principal
			case model.UsageDimensionModel:
				k.model = ru.Model
			case model.UsageDimensionDay:
				k.day = ru.Day
			}
		}
		t := rows[k]
		if t == nil {
			t = &chat.UsageTotals{}
			rows[k] = t
		}
		t.Add(ru.Totals)
	}
	keys := make([]rowKey, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		return cmp.Or(cmp.Compare(a.principal, b.principal), cmp.Compare(a.model, b.model), cmp.Compare(a.day, b.day))
	})
	out := &model.UsageReport{From: from, To: to, Currency: currency, Total: usageTotals(total), Rows: []*model.UsageRow{}, Pending: int(pending)}
	has := func(d model.UsageDimension) bool { return slices.Contains(by, d) }
	for _, k := range keys {
		row := &model.UsageRow{Totals: usageTotals(*rows[k])}
		if has(model.UsageDimensionPrincipal) {
			row.Principal = &k.principal
		}
		if has(model.UsageDimensionModel) {
			row.Model = &k.model
		}
		if has(model.UsageDimensionDay) {
			row.Day = &k.day
		}
		out.Rows = append(out.Rows, row)
	}
	return out
}

func usageTotals(t chat.UsageTotals) *model.UsageTotals {
	return &model.UsageTotals{
		Calls: int(t.Calls), EstimatedCalls: int(t.EstimatedCalls), UnpricedCalls: int(t.UnpricedCalls),
		InputTokens: int(t.InputTokens), OutputTokens: int(t.OutputTokens), TotalTokens: int(t.TotalTokens),
		ReasoningTokens: int(t.ReasoningTokens), CacheReadTokens: int(t.CacheReadTokens), CacheWriteTokens: int(t.CacheWriteTokens),
		Cost: t.Cost.String(),
	}
}
