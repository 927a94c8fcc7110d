package tools_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/tools"
)

// The built-in tools are reached through the registry, over MCP, as a
// model's calls are.

func TestBuiltinSpecs(t *testing.T) {
	r := newRegistry(t)
	specs, err := r.Specs([]string{"builtin.*"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"calculator": `"expression"`, "clock": `"timezone"`}
	for _, s := range specs {
		if s.Description == "" || !strings.Contains(string(s.InputSchema), want[s.Name]) {
			t.Errorf("spec %s = %q, schema %s; want a description and %s in the schema", s.Name, s.Description, s.InputSchema, want[s.Name])
		}
		delete(want, s.Name)
	}
	if len(want) > 0 {
		t.Errorf("missing built-in tools %v", want)
	}
}

func TestClock(t *testing.T) {
	r := newRegistry(t)
	tests := []struct {
		input string
		zone  string // "": a tool error is wanted
	}{
		{`{}`, "UTC"},
		{`{"timezone":""}`, "UTC"},
		{`{"timezone":"Europe/Paris"}`, "Europe/Paris"},
		{`{"timezone":"Asia/Kolkata"}`, "Asia/Kolkata"},
		{`{"timezone":"America/St_Johns"}`, "America/St_Johns"},
		{`{"timezone":"Mars/Olympus_Mons"}`, ""},
		{`{"timezone":"Local"}`, ""},
		{`{"timezone":"../../etc/passwd"}`, ""},
		{`{"timezone":42}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			var loc *time.Location
			if tt.zone != "" {
				var err error
				if loc, err = time.LoadLocation(tt.zone); err != nil {
					t.Skipf("no time zone database here: %v", err)
				}
			}
			before := time.Now().Truncate(time.Second)
			res, err := r.Call(t.Context(), "clock", json.RawMessage(tt.input))
			after := time.Now()
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if tt.zone == "" {
				if !res.IsError || res.Output == "" {
					t.Errorf("Call = %+v, want a tool error that says why", res)
				}
				return
			}
			if res.IsError {
				t.Fatalf("Call = %+v, want the time", res)
			}
			var out struct{ Time, Weekday, Timezone string }
			if err := json.Unmarshal([]byte(res.Output), &out); err != nil {
				t.Fatalf("output %q: %v", res.Output, err)
			}
			now, err := time.Parse(time.RFC3339, out.Time)
			if err != nil {
				t.Fatalf("time %q is not RFC 3339: %v", out.Time, err)
			}
			if now.Before(before) || now.After(after) {
				t.Errorf("time %v is not between %v and %v", now, before, after)
			}
			_, wantOffset := now.In(loc).Zone()
			if _, offset := now.Zone(); offset != wantOffset {
				t.Errorf("time %s has offset %ds, want %ds (%s)", out.Time, offset, wantOffset, tt.zone)
			}
			if want := now.In(loc).Weekday().String(); out.Weekday != want || out.Timezone != tt.zone {
				t.Errorf("weekday, zone = %s, %s; want %s, %s", out.Weekday, out.Timezone, want, tt.zone)
			}
		})
	}
}

func TestCalculator(t *testing.T) {
	r := newRegistry(t)
	tests := []struct {
		expr string
		want string
		err  string // a tool error containing this is wanted
	}{
		{expr: "1+2", want: "3"},
		{expr: "2+3*4", want: "14"},
		{expr: "(2+3)*4", want: "20"},
		{expr: "10-4-3", want: "3"},
		{expr: "100/10/5", want: "2"},
		{expr: "2*3%4", want: "2"},
		{expr: "7%3", want: "1"},
		{expr: "-7%3", want: "-1"},
		{expr: "7.5%2", want: "1.5"},
		{expr: "2^3^2", want: "512"},
		{expr: "(2^3)^2", want: "64"},
		{expr: "2**3**2", want: "512"},
		{expr: "-2^2", want: "-4"},
		{expr: "(-2)^2", want: "4"},
		{expr: "2^-1", want: "0.5"},
		{expr: "2^-2^-1", want: "0.707106781186547"},
		{expr: "3*-2", want: "-6"},
		{expr: "--3", want: "3"},
		{expr: "+4", want: "4"},
		{expr: "-(1+2)*3", want: "-9"},
		{expr: "0.1+0.2", want: "0.3"},
		{expr: ".5*4", want: "2"},
		{expr: "5.", want: "5"},
		{expr: "1/3", want: "0.333333333333333"},
		{expr: "10/4", want: "2.5"},
		{expr: "1e3+1", want: "1001"},
		{expr: "2.5E-3*2", want: "0.005"},
		{expr: "2^53", want: "9007199254740992"},
		{expr: "1e21", want: "1e+21"},
		{expr: "0.0000001", want: "1e-07"},
		{expr: "1000000", want: "1000000"},
		{expr: "-0", want: "0"},
		{expr: "0*-1", want: "0"},
		{expr: " \t3 * ( 4 + 5 )\n", want: "27"},
		{expr: "((((((((((1))))))))))", want: "1"},

		{expr: "1/0", err: "division by zero at character 2"},
		{expr: "5%(2-2)", err: "division by zero"},
		{expr: "0^-1", err: "too large"},
		{expr: "10^400", err: "too large"},
		{expr: "1e999", err: "too large"},
		{expr: "(-8)^(1/3)", err: "no real result"},
		{expr: "", err: "empty"},
		{expr: "   ", err: "empty"},
		{expr: "1+", err: "ends where a number was expected"},
		{expr: "(1+2", err: "parenthesis at character 1 is never closed"},
		{expr: "(1+2]", err: `unexpected ']' at character 5`},
		{expr: "1+2)", err: `unexpected ')' at character 4`},
		{expr: "2 3", err: `unexpected '3' at character 3`},
		{expr: "2(3)", err: `unexpected '(' at character 2`},
		{expr: "abc", err: `unexpected 'a' at character 1`},
		{expr: "1..2", err: `unexpected '.' at character 3`},
		{expr: ".", err: "a number is expected at character 1"},
		{expr: "2e", err: `unexpected 'e' at character 2`},
		{expr: "2^^3", err: `unexpected '^' at character 3`},
		{expr: "2***3", err: `unexpected '*' at character 4`},
		{expr: "3 × 4", err: `unexpected '×' at character 3`},
		{expr: "1+" + strings.Repeat("1", 199), err: "201 characters long; the limit is 200"},
		{expr: strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40), err: "deeper than 32 levels"},
		{expr: strings.Repeat("-", 40) + "1", err: "deeper than 32 levels"},
		{expr: strings.Repeat("2^", 40) + "1", err: "deeper than 32 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			input, _ := json.Marshal(map[string]string{"expression": tt.expr})
			res, err := r.Call(t.Context(), "calculator", input)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			want := tools.Result{Output: tt.want}
			if tt.err != "" {
				if !res.IsError || !strings.Contains(res.Output, tt.err) {
					t.Errorf("Call = %+v, want a tool error with %q", res, tt.err)
				}
				return
			}
			if res != want {
				t.Errorf("Call = %+v, want %+v", res, want)
			}
		})
	}

	// The schema is the SDK's to check: a missing expression is the
	// model's error too.
	res, err := r.Call(t.Context(), "calculator", json.RawMessage(`{"expr":"1+1"}`))
	if err != nil || !res.IsError {
		t.Errorf("Call without expression = %+v, %v; want a tool error", res, err)
	}
}

// BenchmarkBuiltinCalculator is what one built-in tool call costs a run:
// the MCP round trip through the in-memory transport and the evaluation.
func BenchmarkBuiltinCalculator(b *testing.B) {
	r, err := tools.New(b.Context(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	input := json.RawMessage(`{"expression":"6*7"}`)
	b.ReportAllocs()
	for b.Loop() {
		res, err := r.Call(b.Context(), "builtin.calculator", input)
		if err != nil || res.IsError || res.Output != "42" {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
