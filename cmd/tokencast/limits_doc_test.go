package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/security.md lists every limit that faces the network or the disk with
// the default --help gives it.
func TestSecurityDocListsEveryLimitWithItsDefault(t *testing.T) {
	var help bytes.Buffer
	_ = run(context.Background(), []string{"serve", "--help"}, func(string) string { return "" }, nil, &help, &help)
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+) \(env [A-Z0-9_]+, default "([^"]*)"\)`).FindAllStringSubmatch(help.String(), -1) {
		defaults[m[1]] = m[2]
	}
	if len(defaults) < 50 {
		t.Fatalf("read %d flags from --help:\n%s", len(defaults), help.String())
	}
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	row := regexp.MustCompile("(?m)^\\| (`--[^|]*) \\| (`[^|]*) \\|")
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		flags, values := strings.Split(m[1], " / "), strings.Split(m[2], " / ")
		if len(flags) != len(values) {
			t.Errorf("row %q: %d flags, %d defaults", m[0], len(flags), len(values))
			continue
		}
		for i, f := range flags {
			name := strings.Trim(strings.TrimSpace(f), "`-")
			want := strings.Trim(strings.TrimSpace(values[i]), "`")
			got, ok := defaults[name]
			switch {
			case !ok:
				t.Errorf("docs/security.md lists --%s, which --help does not know", name)
			case got != want:
				t.Errorf("docs/security.md gives --%s the default %q; --help says %q", name, want, got)
			}
			listed[name] = true
		}
	}
	// Not limits on what clients may do: how the server itself waits on
	// its model and its own shutdown, and how often a request is retried.
	notLimits := map[string]bool{"first-token-timeout": true, "idle-timeout": true, "shutdown-timeout": true, "max-deliver": true, "appsync-connection-timeout": true}
	limit := regexp.MustCompile(`^(max-.*|.*-timeout|.*-rate|.*-burst|queue-.*|ws-read-limit|.*-ttl|event-retention|token-grace|sigv4-max-skew|appsync-max-payload)$`)
	for name := range defaults {
		if limit.MatchString(name) && !notLimits[name] && !listed[name] {
			t.Errorf("docs/security.md does not list the limit --%s (default %q)", name, defaults[name])
		}
	}
}
