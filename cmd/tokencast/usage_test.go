package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/usagecli"
)

// usageYAML is modelsYAML with prices: openai:ok is priced, the others
// count tokens only.
const usageYAML = modelsYAML + `usage:
  currency: EUR
  prices:
    "openai:ok": {input: "1.5", output: "2.000001"}
`

func startWithUsage(t *testing.T, yaml string, env map[string]string, args ...string) (*server, *openAIFake) {
	t.Helper()
	f := newOpenAIFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"}
	for k, v := range env {
		all[k] = v
	}
	s := start(t, "", all, append([]string{"--config", cfgPath, "--coalesce-window", "0", "--provider-retries", "2", "--retry-budget", "5s"}, args...)...)
	return s, f
}

// usageOf runs tokencast usage --json as key over yesterday and today (a
// test that runs over midnight UTC still sees all its calls), once every
// recorded call is in the sums and there are at least calls of them.
func (s *server) usageOf(t *testing.T, key, principal string, calls int, by ...string) usagecli.Report {
	t.Helper()
	now := time.Now().UTC()
	args := []string{"usage", "--url", "http://" + s.addr, "--json", "--from", now.Add(-24 * time.Hour).Format("2006-01-02"), "--to", now.Format("2006-01-02"), "--by", strings.Join(by, ",")}
	if principal != "" {
		args = append(args, "--principal", principal)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var stdout, stderr bytes.Buffer
		env := map[string]string{"TOKENCAST_API_KEY": key}
		if err := run(context.Background(), args, func(k string) string { return env[k] }, nil, &stdout, &stderr); err != nil {
			t.Fatalf("tokencast usage: %v\n%s", err, stderr.String())
		}
		var r usagecli.Report
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("tokencast usage --json printed %q: %v", stdout.String(), err)
		}
		if r.Pending == 0 && r.Total.Calls >= calls {
			return r
		}
		if time.Now().After(deadline) {
			log := ""
			if s.stderr != nil {
				log = lastLines(s.stderr.String(), 30)
			}
			t.Fatalf("usage never reached %d calls with none pending: %+v %+v\n%s", calls, r, r.Total, log)
		}
	}
}

// rowOf is the report's row of a model.
func rowOf(t *testing.T, r usagecli.Report, name string) model.UsageTotals {
	t.Helper()
	for _, row := range r.Rows {
		if row.Model != nil && *row.Model == name {
			return *row.Totals
		}
	}
	t.Fatalf("no row for %s in %+v", name, r.Rows)
	return model.UsageTotals{}
}

// Every provider call is recorded once with what the fake reported: a
// complete answer, a call retried after a 429, a primary that failed before
// its fallback answered, a cancelled answer (the fake reports nothing: an
// estimate, marked). The query, the CLI and the metrics agree.
func TestUsageRecordsEveryProviderCall(t *testing.T) {
	s, f := startWithUsage(t, usageYAML, nil, "--first-token-timeout", "20s")
	c := subscribed(t, s, "s-usage", nil)
	for _, model := range []string{"ok", "throttled", "primary"} {
		req := s.askModel(t, "s-usage", "hi", "en", model)
		if evs := c.answer("1", req); evs[len(evs)-1].Type != "END" {
			t.Fatalf("%s: %s", model, types(evs))
		}
	}
	// In a session of its own, so its prompt is the system prompt and "hi".
	c = subscribed(t, s, "s-usage-slow", nil)
	req := s.askModel(t, "s-usage-slow", "hi", "en", "slow")
	c.next("1") // START
	c.next("1") // the first DELTA
	if !s.cancelAnswer(t, "s-usage-slow", req) {
		t.Fatal("cancel said the answer had ended")
	}
	<-f.canceled
	if evs := c.answer("1", req); evs[len(evs)-1].Type != "CANCELLED" {
		t.Fatalf("slow: %s", types(evs))
	}

	// 1 ok + 2 throttle-once (429, then an answer) + 3 down (1 + 2
	// retries) + its fallback ok + 1 slow.
	r := s.usageOf(t, "", "", 8, "model")
	if r.Total.Calls != 8 || r.Currency != "EUR" {
		t.Fatalf("total %+v currency %s, want 8 calls in EUR", r.Total, r.Currency)
	}
	ok := rowOf(t, r, "openai:ok")
	// 22 × 1.5 + 8 × 2.000001 per million tokens, exactly.
	if ok.Calls != 2 || ok.InputTokens != 22 || ok.OutputTokens != 8 || ok.TotalTokens != 30 || ok.EstimatedCalls != 0 || ok.Cost != "0.000049000008" {
		t.Fatalf("openai:ok %+v, want the fake's 11+4 tokens twice at its price", ok)
	}
	thr := rowOf(t, r, "openai:throttle-once")
	if thr.Calls != 2 || thr.InputTokens != 11 || thr.OutputTokens != 4 || thr.UnpricedCalls != 2 || thr.Cost != "0" {
		t.Fatalf("openai:throttle-once %+v, want a refused call and one answer of 11+4, unpriced", thr)
	}
	down := rowOf(t, r, "openai:down")
	if down.Calls != 3 || down.TotalTokens != 0 || down.EstimatedCalls != 0 {
		t.Fatalf("openai:down %+v, want 3 refused calls that cost nothing", down)
	}
	slow := rowOf(t, r, "openai:slow")
	// The fake reported nothing for the stopped call: "Answer in English
	// (en)." and "hi" are 25 characters, 7 tokens; "The " is 1.
	if slow.Calls != 1 || slow.EstimatedCalls != 1 || slow.InputTokens != 7 || slow.OutputTokens != 1 {
		t.Fatalf("openai:slow %+v, want one estimated call", slow)
	}

	// The CLI's table says the same as its JSON.
	var table bytes.Buffer
	if err := run(context.Background(), []string{"usage", "--url", "http://" + s.addr, "--by", "model"}, func(string) string { return "" }, nil, &table, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "openai:ok") || !strings.Contains(table.String(), "0.000049000008") || !strings.Contains(table.String(), "1 estimated") {
		t.Fatalf("usage table:\n%s", table.String())
	}

	_, metrics := s.get(t, "/metrics")
	for _, want := range []string{
		`tokencast_usage_tokens_total{kind="input",model="openai:ok",principal="dev"} 22`,
		`tokencast_usage_tokens_total{kind="output",model="openai:ok",principal="dev"} 8`,
		`tokencast_usage_tokens_total{kind="input",model="openai:slow",principal="dev"} 7`,
		`tokencast_usage_calls_total{counts="estimated",model="openai:slow",principal="dev"} 1`,
		`tokencast_usage_calls_total{counts="reported",model="openai:down",principal="dev"} 3`,
		`tokencast_usage_cost_total{currency="EUR",model="openai:ok",principal="dev"} 4.9000008e-05`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(metrics, "tokencast_usage_"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A client key sees its own usage only; a service key everyone's.
func TestUsageIsEachPrincipalsOwn(t *testing.T) {
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:alice-secret-0123456789,bob:bob-secret-0123456789", "TOKENCAST_SERVICE_KEYS": "ops:ops-secret-0123456789"}
	s, _ := startWithUsage(t, usageYAML, env, "--mode", "prod")
	for _, who := range []string{"alice", "bob", "bob"} {
		key := who + "-secret-0123456789"
		session := fmt.Sprintf("s-own-%s", who)
		c := dialWS(t, s)
		c.init(map[string]any{"x-api-key": key})
		c.subscribe("1", session)
		status, resp := s.post(t, key, askQuery, map[string]any{"input": map[string]any{"sessionId": session, "message": "hi", "locale": "en"}})
		if status != http.StatusOK || len(resp.Errors) > 0 {
			t.Fatalf("ask: %d %+v", status, resp.Errors)
		}
		var data struct {
			GetLlmResponse struct{ RequestID string } `json:"getLlmResponse"`
		}
		_ = json.Unmarshal(resp.Data, &data)
		c.answer("1", data.GetLlmResponse.RequestID)
	}
	all := s.usageOf(t, "ops-secret-0123456789", "", 3, "principal")
	if len(all.Rows) != 2 || *all.Rows[0].Principal != "key:alice" || all.Rows[0].Totals.Calls != 1 || *all.Rows[1].Principal != "key:bob" || all.Rows[1].Totals.Calls != 2 {
		t.Fatalf("a service sees %+v, want alice's call and bob's two", all.Rows)
	}
	own := s.usageOf(t, "bob-secret-0123456789", "", 2, "principal")
	if own.Total.Calls != 2 || len(own.Rows) != 1 || *own.Rows[0].Principal != "key:bob" {
		t.Fatalf("bob sees %+v, want his own two calls", own)
	}
	status, resp := s.post(t, "bob-secret-0123456789", `{ usage(from: "2026-01-01", to: "2026-01-02", principal: "key:alice") { total { calls } } }`, nil)
	if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != "FORBIDDEN" {
		t.Fatalf("bob asking for alice's usage: %d %+v", status, resp.Errors)
	}
}

// A worker killed mid-answer cannot record the call it was in, which
// had sent the prompt: the worker that takes the request over counts it
// from the note left before the call (the prompt's estimate, marked), then
// its own call with the fake's counts; nothing twice. What the lost call
// held against the budget is released: the counter ends at what the two
// records say.
func TestUsageThroughAWorkerKilledMidAnswer(t *testing.T) {
	f := newOpenAIFake(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(cfgPath, []byte(budgetYAML(100000, 10, 16)), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := freeAddr(t)
	s := start(t, "", map[string]string{"OPENAI_BASE_URL": f.srv.URL + "/v1", "OPENAI_API_KEY": "sk-test"},
		"--role", "api", "--nats-listen", natsAddr, "--ack-wait", "1s", "--config", cfgPath)
	env := []string{"OPENAI_BASE_URL=" + f.srv.URL + "/v1", "OPENAI_API_KEY=sk-test"}
	worker := func() *proc {
		p := spawnEnvAt(t, freeAddr(t), env, workerArgs(natsAddr, "--config", cfgPath)...)
		p.waitReady()
		return p
	}
	w1 := worker()
	c := subscribed(t, s, "s-usage-kill", nil)
	req := s.askModel(t, "s-usage-kill", "hi", "en", "slow")
	c.next("1") // START
	c.next("1") // the first DELTA: the call is under way
	w1.kill()
	worker()
	evs := c.untilTerminal("1", req)
	if last := evs[len(evs)-1]; last.Type != "END" || last.Usage == nil || last.Usage.InputTokens != 11 {
		t.Fatalf("events %s, want the answer to end with the fake's usage", types(evs))
	}
	r := s.usageOf(t, "", "", 2, "model")
	slow := rowOf(t, r, "openai:slow")
	// The lost call, estimated: "Answer in English (en)." and "hi", 25
	// characters, 7 tokens, and "The ", 1, noted when its first output
	// was held against the budget; then the fake's 11+4.
	if r.Total.Calls != 2 || slow.Calls != 2 || slow.EstimatedCalls != 1 || slow.InputTokens != 18 || slow.OutputTokens != 5 || slow.TotalTokens != 23 {
		t.Fatalf("usage %+v, want the lost call's 7+1 estimated and the fake's 11+4", slow)
	}
	js, ctx := jetStreamAt(t, natsAddr)
	budgets, err := js.KeyValue(ctx, "TC_BUDGETS")
	if err != nil {
		t.Fatal(err)
	}
	spent := func() (total int64) {
		keys, err := budgets.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			e, err := budgets.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			var v struct{ Tokens int64 }
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				t.Fatal(err)
			}
			total += v.Tokens
		}
		return total
	}
	// The takeover settled the lost call before its own call began.
	if got := spent(); got != 23 {
		t.Fatalf("the budget counts %d tokens, want the records' 23 (the lost call's hold released)", got)
	}
	open, err := js.KeyValue(ctx, "TC_OPEN_CALLS")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		keys, err := open.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for k := range keys.Keys() {
			left = append(left, k)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notes of open calls left after the answer: %v", left)
		}
	}
}

// After a run of tokencast bench against a server whose model is the
// bench's fake LLM, the usage query, tokencast usage and the metrics say
// the same: every answer's call once, with the fake's counts and price.
func TestUsageAgreesAfterABenchRun(t *testing.T) {
	const sessions, tokens = 12, 20
	fakeAddr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "models.yaml")
	yaml := "models:\n  bench: {ref: \"openai:bench\"}\nusage:\n  currency: USD\n  prices:\n    \"openai:bench\": {input: \"0.25\", output: \"1.25\"}\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "", map[string]string{"OPENAI_BASE_URL": "http://" + fakeAddr + "/v1", "OPENAI_API_KEY": "sk-bench"},
		"--config", cfgPath, "--ask-rate", "0", "--session-rate", "0")
	var out, errOut bytes.Buffer
	args := []string{"bench", "--target", s.url(), "--model", "bench", "--fake-llm-addr", fakeAddr, "--sessions", fmt.Sprint(sessions),
		"--subscribers", "1", "--tokens", fmt.Sprint(tokens), "--token-rate", "1000", "--first-token-delay", "1ms", "--ramp", "100ms", "--json"}
	if err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	r := s.usageOf(t, "", "", sessions, "principal", "model")
	want := model.UsageTotals{Calls: sessions, InputTokens: sessions * 3, OutputTokens: sessions * tokens, TotalTokens: sessions * (3 + tokens),
		// 12 × (3 × 0.25 + 20 × 1.25) per million tokens
		Cost: "0.000309"}
	if len(r.Rows) != 1 || *r.Rows[0].Totals != want || *r.Total != want {
		t.Fatalf("usage %+v, rows %+v, want %+v", r.Total, r.Rows, want)
	}
	_, metrics := s.get(t, "/metrics")
	for _, line := range []string{
		fmt.Sprintf(`tokencast_usage_tokens_total{kind="input",model="openai:bench",principal="dev"} %d`, want.InputTokens),
		fmt.Sprintf(`tokencast_usage_tokens_total{kind="output",model="openai:bench",principal="dev"} %d`, want.OutputTokens),
		fmt.Sprintf(`tokencast_usage_calls_total{counts="reported",model="openai:bench",principal="dev"} %d`, want.Calls),
		`tokencast_usage_cost_total{currency="USD",model="openai:bench",principal="dev"} 0.000309`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s; it has\n%s", line, grepLines(metrics, "tokencast_usage_"))
		}
	}
}

// A call that timed out before its first token reached the model, which
// read the prompt: it is counted, estimated, since the provider reported
// nothing.
func TestUsageCountsATimedOutCall(t *testing.T) {
	s, _ := startWithUsage(t, usageYAML, nil, "--first-token-timeout", "200ms")
	c := subscribed(t, s, "s-usage-timeout", nil)
	req := s.askModel(t, "s-usage-timeout", "hi", "en", "stall-first")
	if evs := c.answer("1", req); evs[len(evs)-1].Type != "ERROR" || evs[len(evs)-1].Error.Code != "PROVIDER_TIMEOUT" {
		t.Fatalf("events %s, want ERROR PROVIDER_TIMEOUT", types(evs))
	}
	r := s.usageOf(t, "", "", 1, "model")
	got := rowOf(t, r, "openai:stall-first")
	// "Answer in English (en)." and "hi": 25 characters, 7 tokens.
	if got.Calls != 1 || got.EstimatedCalls != 1 || got.InputTokens != 7 || got.OutputTokens != 0 {
		t.Fatalf("usage %+v, want the timed-out call's prompt, estimated", got)
	}
}
