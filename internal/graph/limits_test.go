package graph

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"

	"github.com/tokencast/tokencast/internal/auth"
)

// fragmentBomb spreads each fragment ten times in the next: {...F<levels>}
// selects 10^levels fields in a document under a kilobyte.
func fragmentBomb(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{...F%d}\nfragment F0 on Query{__typename}\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on Query{%s}\n", i, strings.TrimSpace(strings.Repeat(fmt.Sprintf("...F%d ", i-1), 10)))
	}
	return b.String()
}

// Documents that cost far more to validate or execute than to send are
// refused, with a stable code, by a check linear in the document and before
// any validation: a fragment bomb, twenty thousand repeated fields, a
// deep nesting, too many aliases.
func TestCostIsBoundedBeforeValidation(t *testing.T) {
	ops := newOps()
	for _, tc := range []struct {
		name, query, code string
	}{
		{"fragment bomb, 8 levels", fragmentBomb(8), "TOO_MANY_FIELDS"},
		{"fragment bomb, 40 levels (counts saturate)", fragmentBomb(40), "TOO_MANY_FIELDS"},
		{"20,000 unaliased fields", "{" + strings.Repeat("__typename ", 20000) + "}", "TOO_MANY_FIELDS"},
		{"20,000 fields in an unused fragment", "{__typename}\nfragment U on Query{" + strings.Repeat("__typename ", 20000) + "}", "TOO_MANY_FIELDS"},
		{"deep", "{" + strings.Repeat("a{", 50) + "b" + strings.Repeat("}", 50) + "}", "QUERY_TOO_DEEP"},
		{"deep through fragments", "{...D0}\n" + deepFragments(20), "QUERY_TOO_DEEP"},
		{"aliases through a fragment", "{...A ...A}\nfragment A on Query{" + aliases(20) + "}", "TOO_MANY_ALIASES"},
		{"a fragment cycle is left to validation", "{...C1}\nfragment C1 on Query{...C2}\nfragment C2 on Query{...C1}", "GRAPHQL_VALIDATION_FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := auth.WithPrincipal(context.Background(), auth.DevPrincipal)
			_, errs := ops.Prepare(ctx, &graphql.RawParams{Query: tc.query})
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			if code, _ := errs[0].Extensions["code"].(string); code != tc.code {
				t.Fatalf("refused with %q (%s), want %s", code, errs[0].Message, tc.code)
			}
		})
	}
	// What a client really sends still passes.
	ctx := auth.WithPrincipal(context.Background(), auth.DevPrincipal)
	ok := "query { models { name } }\n" +
		"fragment E on SendMessageResponse { type message requestId index cursor }"
	if _, errs := ops.Prepare(ctx, &graphql.RawParams{Query: "subscription { onSendMessage(sessionId: \"s\") { ...E sessionId } }\n" + ok[len("query { models { name } }\n"):]}); len(errs) > 0 {
		t.Fatalf("a normal subscription with a fragment: %v", errs)
	}
}

func deepFragments(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "fragment D%d on Query{models{...D%d}}\n", i, i+1)
	}
	fmt.Fprintf(&b, "fragment D%d on Query{__typename}\n", n)
	return b.String()
}

func aliases(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a%d: __typename ", i)
	}
	return b.String()
}

// BenchmarkRefuseFragmentBomb is what the server spends refusing the issue's
// fragment bomb (before: more than 34 s of CPU).
func BenchmarkRefuseFragmentBomb(b *testing.B) {
	ops := newOps()
	ctx := auth.WithPrincipal(context.Background(), auth.DevPrincipal)
	q := fragmentBomb(8)
	for b.Loop() {
		if _, errs := ops.Prepare(ctx, &graphql.RawParams{Query: q}); len(errs) == 0 {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkRefuseRepeatedFields: 20,000 unaliased fields (before: more than
// 55 s of validation).
func BenchmarkRefuseRepeatedFields(b *testing.B) {
	ops := newOps()
	ctx := auth.WithPrincipal(context.Background(), auth.DevPrincipal)
	q := "{" + strings.Repeat("__typename ", 20000) + "}"
	for b.Loop() {
		if _, errs := ops.Prepare(ctx, &graphql.RawParams{Query: q}); len(errs) == 0 {
			b.Fatal("accepted")
		}
	}
}
