package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRefusalsLogOneLinePerSourcePerPeriod(t *testing.T) {
	var out bytes.Buffer
	r := NewRefusals(slog.New(slog.NewTextHandler(&out, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	attacker, user := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")

	for range 1000 {
		r.Origin(ctx, attacker, "https://evil.example", "WebSocket upgrade")
	}
	r.Origin(ctx, user, "https://app.example", "CORS preflight")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("1,000 refusals from one source and one from another wrote %d lines:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"level=WARN", `msg="refused a browser origin"`, "origin=https://evil.example", "addr=198.51.100.1", "fix=--allowed-origins", "refused=1"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("first line lacks %s: %s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], "addr=198.51.100.2") {
		t.Errorf("another source was silenced: %s", lines[1])
	}

	// A minute on, the next refusal writes a line that counts the 999 held
	// back and itself.
	now = now.Add(time.Minute)
	out.Reset()
	r.Origin(ctx, attacker, "https://evil.example", "WebSocket upgrade")
	if got := out.String(); !strings.Contains(got, "refused=1000") {
		t.Fatalf("after a minute: %s", got)
	}
}

func TestRefusalsNameNoSecretAndTheFix(t *testing.T) {
	var out bytes.Buffer
	r := NewRefusals(slog.New(slog.NewTextHandler(&out, nil)))
	ctx := context.Background()
	addr := netip.MustParseAddr("127.0.0.2")
	r.Credentials(ctx, addr, "https://app.example", errors.New("missing or invalid API key"), FixCredentials)
	r.Connection(ctx, addr, "key:web", "", "--max-conns-per-principal")
	r.Ask(ctx, addr, "key:web", "key:web@127.0.0.2", 1500*time.Millisecond)
	for _, want := range []string{
		`msg="refused credentials"`, "TOKENCAST_API_KEYS", "origin=https://app.example",
		`msg="refused a connection over its cap"`, "principal=key:web", "fix=--max-conns-per-principal",
		`msg="refused a question over the ask rate"`, "retry_after=1.5s", `fix="--ask-rate, --ask-burst"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
}

// The table of sources is bounded: past it, refusals from new sources share
// one line.
func TestRefusalsMemoryIsBounded(t *testing.T) {
	var out bytes.Buffer
	r := NewRefusals(slog.New(slog.NewTextHandler(&out, nil)))
	r.max = 100
	for i := range 1000 {
		r.Warn(context.Background(), "src "+string(rune('a'+i%26))+strings.Repeat("x", i), "refused")
	}
	if len(r.sources) > 101 {
		t.Fatalf("%d sources kept", len(r.sources))
	}
	if n := strings.Count(out.String(), "\n"); n > 101 {
		t.Fatalf("%d lines", n)
	}
}
