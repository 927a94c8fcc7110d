package chat

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Money is an exact amount of the server's currency, counted in picos
// (10⁻¹² of a unit): a price per million tokens with up to six decimals is
// a whole number of picos per token, so a call's cost is an exact integer
// product and sums are exact sums. It is a big integer, so no total
// overflows; JSON carries it as a decimal string ("12.5").
//
// Floats are not used: 0.1 + 0.2 is not 0.3 in binary, and a bill summed
// from millions of calls would drift from the sum of its lines.
type Money struct{ picos *big.Int }

// picosPerUnit is how many picos make one unit of currency.
var picosPerUnit = big.NewInt(1_000_000_000_000)

// Picos is an amount in picos.
func Picos(n int64) Money { return Money{picos: big.NewInt(n)} }

// Add returns m + o.
func (m Money) Add(o Money) Money {
	return Money{picos: new(big.Int).Add(m.int(), o.int())}
}

// Sub returns m - o.
func (m Money) Sub(o Money) Money {
	return Money{picos: new(big.Int).Sub(m.int(), o.int())}
}

// Cmp compares m and o as big.Int.Cmp does.
func (m Money) Cmp(o Money) int { return m.int().Cmp(o.int()) }

// Sign is -1, 0 or +1.
func (m Money) Sign() int { return m.int().Sign() }

func (m Money) int() *big.Int {
	if m.picos == nil {
		return new(big.Int)
	}
	return m.picos
}

// String is the amount as a decimal: "0", "3", "0.000125", "-1.5".
func (m Money) String() string {
	v := m.int()
	neg := v.Sign() < 0
	q, r := new(big.Int).QuoRem(new(big.Int).Abs(v), picosPerUnit, new(big.Int))
	s := q.String()
	if r.Sign() != 0 {
		frac := strings.TrimRight(fmt.Sprintf("%012s", r.String()), "0")
		s += "." + frac
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseMoney reads a non-negative decimal amount with at most maxDecimals
// decimals (at most 12).
func ParseMoney(s string, maxDecimals int) (Money, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return Money{}, errors.New("empty amount")
	}
	if len(frac) > maxDecimals || len(frac) > 12 {
		return Money{}, fmt.Errorf("%q has more than %d decimals", s, min(maxDecimals, 12))
	}
	digits := whole + frac + strings.Repeat("0", 12-len(frac))
	for _, c := range digits {
		if c < '0' || c > '9' {
			return Money{}, fmt.Errorf("%q is not a decimal amount", s)
		}
	}
	v, ok := new(big.Int).SetString(strings.TrimLeft(digits, "0")+"0", 10)
	if !ok {
		return Money{}, fmt.Errorf("%q is not a decimal amount", s)
	}
	return Money{picos: v.Quo(v, big.NewInt(10))}, nil
}

// Int64 is the amount in picos when it fits, and whether it does.
func (m Money) Int64() (int64, bool) {
	v := m.int()
	return v.Int64(), v.IsInt64()
}

// MarshalJSON writes the amount as a decimal string.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(`"` + m.String() + `"`), nil }

// UnmarshalJSON reads a decimal string.
func (m *Money) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	neg := strings.HasPrefix(s, "-")
	v, err := ParseMoney(strings.TrimPrefix(s, "-"), 12)
	if err != nil {
		return err
	}
	if neg {
		v.picos.Neg(v.picos)
	}
	*m = v
	return nil
}
