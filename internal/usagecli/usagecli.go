// Package usagecli is `tokencast usage`: what provider calls cost, read from
// a server's usage query and printed as a table or JSON.
package usagecli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokencast/tokencast/internal/graph/model"
)

// Options is what one usage run needs.
type Options struct {
	// URL is the server's base URL or its /graphql endpoint.
	URL       string
	APIKey    string
	From, To  string
	Principal string
	// By are the dimensions of the rows: principal, model, day.
	By   []string
	JSON bool
}

const usageText = `Usage: tokencast usage [flags]

Prints what the provider calls cost over a range of UTC days: the total, then
one row per principal, model and day (--by picks the dimensions). A service
key sees every principal (--principal picks one); any other key its own usage
only. Costs are exact decimals in the server's currency. See docs/usage.md.

Flags:
`

// Parse reads the flags of `tokencast usage`.
func Parse(args []string, getenv func(string) string, now time.Time, out io.Writer) (Options, error) {
	o := Options{}
	today := now.UTC().Format("2006-01-02")
	var by string
	fs := flag.NewFlagSet("tokencast usage", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.URL, "url", envOr(getenv, "TOKENCAST_URL", "http://127.0.0.1:8080"), "server URL (env TOKENCAST_URL)")
	fs.StringVar(&o.APIKey, "api-key", getenv("TOKENCAST_API_KEY"), "API key (env TOKENCAST_API_KEY, which keeps it out of ps); a service key sees every principal")
	fs.StringVar(&o.From, "from", today, "first UTC day, YYYY-MM-DD (default today)")
	fs.StringVar(&o.To, "to", today, "last UTC day, YYYY-MM-DD, included (default today)")
	fs.StringVar(&o.Principal, "principal", "", "only this principal, e.g. key:alice or user:bob (service keys)")
	fs.StringVar(&by, "by", "principal,model,day", "dimensions of the rows, comma-separated: principal, model, day; empty for the total only")
	fs.BoolVar(&o.JSON, "json", false, "print the usage query's JSON result")
	fs.Usage = func() {
		fmt.Fprint(out, usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, d := range strings.Split(by, ",") {
		switch d = strings.TrimSpace(strings.ToLower(d)); d {
		case "":
		case "principal", "model", "day":
			o.By = append(o.By, strings.ToUpper(d))
		default:
			return o, fmt.Errorf("--by: %q is not principal, model or day", d)
		}
	}
	return o, nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// Report is the usage query's result, as the schema's generated model
// decodes it.
type Report = model.UsageReport

const totalsFields = `calls estimatedCalls unpricedCalls inputTokens outputTokens totalTokens reasoningTokens cacheReadTokens cacheWriteTokens cost`

const query = `query Usage($from: String!, $to: String!, $principal: String, $by: [UsageDimension!]!) {
  usage(from: $from, to: $to, principal: $principal, by: $by) {
    from to currency pending
    total { ` + totalsFields + ` }
    rows { principal model day totals { ` + totalsFields + ` } }
  }
}`

// Fetch runs the usage query.
func Fetch(ctx context.Context, o Options) (*Report, json.RawMessage, error) {
	vars := map[string]any{"from": o.From, "to": o.To, "by": o.By}
	if o.By == nil {
		vars["by"] = []string{}
	}
	if o.Principal != "" {
		vars["principal"] = o.Principal
	}
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	endpoint := strings.TrimRight(o.URL, "/")
	if !strings.HasSuffix(endpoint, "/graphql") {
		endpoint += "/graphql"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("usage query: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("X-Api-Key", o.APIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("usage query: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("usage query: %w", err)
	}
	var out struct {
		Data struct {
			Usage json.RawMessage `json:"usage"`
		} `json:"data"`
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("usage query: HTTP %d: %w", resp.StatusCode, err)
	}
	if len(out.Errors) > 0 {
		return nil, nil, fmt.Errorf("usage query: %s: %s", out.Errors[0].Extensions.Code, out.Errors[0].Message)
	}
	if len(out.Data.Usage) == 0 || string(out.Data.Usage) == "null" {
		return nil, nil, errors.New("usage query: no result")
	}
	var r Report
	if err := json.Unmarshal(out.Data.Usage, &r); err != nil {
		return nil, nil, fmt.Errorf("usage query: %w", err)
	}
	return &r, out.Data.Usage, nil
}

// Run prints the usage as a table, or as JSON with --json.
func Run(ctx context.Context, o Options, stdout io.Writer) error {
	r, raw, err := Fetch(ctx, o)
	if err != nil {
		return err
	}
	if o.JSON {
		var buf bytes.Buffer
		_ = json.Indent(&buf, raw, "", "  ")
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "PRINCIPAL\tMODEL\tDAY\tCALLS\tINPUT\tOUTPUT\tREASONING\tCACHED\tTOTAL\tCOST (%s)\n", r.Currency)
	line := func(p, m, d *string, t *model.UsageTotals) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s%s\n", or(p), or(m), or(d), t.Calls, t.InputTokens, t.OutputTokens,
			t.ReasoningTokens, t.CacheReadTokens, t.TotalTokens, t.Cost, notes(t))
	}
	for _, row := range r.Rows {
		line(row.Principal, row.Model, row.Day, row.Totals)
	}
	all := "all"
	span := r.From + ".." + r.To
	line(&all, &all, &span, r.Total)
	if err := w.Flush(); err != nil {
		return err
	}
	if r.Pending > 0 {
		fmt.Fprintf(stdout, "%d calls are recorded but not in these sums yet; run again in a moment.\n", r.Pending)
	}
	return nil
}

func or(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// notes marks sums that hold estimates or calls of unpriced models.
func notes(t *model.UsageTotals) string {
	var n []string
	if t.EstimatedCalls > 0 {
		n = append(n, fmt.Sprintf("%d estimated", t.EstimatedCalls))
	}
	if t.UnpricedCalls > 0 {
		n = append(n, fmt.Sprintf("%d unpriced", t.UnpricedCalls))
	}
	if len(n) == 0 {
		return ""
	}
	return " (" + strings.Join(n, ", ") + ")"
}
