package chat

import (
	"encoding/json"
	"testing"
)

func TestMoneyIsExact(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"0", "0"}, {"3", "3"}, {"0.1", "0.1"}, {"00012.500", "12.5"}, {".25", "0.25"}, {"0.000000000001", "0.000000000001"},
	} {
		m, err := ParseMoney(tc.in, 12)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if m.String() != tc.want {
			t.Errorf("%q reads as %s, want %s", tc.in, m, tc.want)
		}
	}
	for _, bad := range []string{"", "1.2.3", "abc", "-1", "0.0000001"} {
		if _, err := ParseMoney(bad, 6); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	// 0.1 + 0.2 is 0.3, ten million times over.
	a, _ := ParseMoney("0.1", 6)
	b, _ := ParseMoney("0.2", 6)
	var sum Money
	for range 10_000_000 / 1000 {
		sum = sum.Add(a).Add(b)
	}
	if sum.String() != "3000" {
		t.Fatalf("sum %s", sum)
	}
	data, _ := json.Marshal(sum.Sub(Picos(1)))
	var back Money
	if err := json.Unmarshal(data, &back); err != nil || back.String() != "2999.999999999999" {
		t.Fatalf("%s round-trips to %s, %v", data, back, err)
	}
}
