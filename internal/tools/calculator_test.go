package tools

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// The calculator reads what a model wrote: whatever it is, the parser
// answers a finite number or an error, within its bounds.
func FuzzEvaluate(f *testing.F) {
	for _, seed := range []string{
		"1+2*3", "(2+3)^2/4", "-2^-2^-1", "7.5%2", "1e3", ".5", "2**3", "1/0",
		"((1)", "2e", "1..2", strings.Repeat("(", 40) + "1", "0.1+0.2", "3 × 4",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		v, err := evaluate(expr)
		if err != nil {
			if err.Error() == "" {
				t.Errorf("evaluate(%q): an empty error", expr)
			}
			return
		}
		if len(expr) > maxExpressionLength {
			t.Errorf("evaluate(%q) = %v: longer than the limit, yet evaluated", expr, v)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("evaluate(%q) = %v, want a finite number", expr, v)
		}
		if _, err := strconv.ParseFloat(formatNumber(v), 64); err != nil {
			t.Errorf("formatNumber(%v) = %q is not a number", v, formatNumber(v))
		}
	})
}
