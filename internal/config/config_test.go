package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNATSFiles: the files that authenticate to an external NATS are
// checked at start, each error naming its flag; a flag's environment
// variable works as the flag does.
func TestNATSFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "exists.pem")
	if err := os.WriteFile(file, []byte("-"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const url = "--nats-url=nats://127.0.0.1:4222"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // "" for no error
		cert bool   // with no error: --nats-cert and --nats-key are file
	}{
		{"client certificate", []string{url, "--nats-cert", file, "--nats-key", file, "--nats-ca", file}, nil, "", true},
		{"client certificate from the environment", []string{url}, map[string]string{"TOKENCAST_NATS_CERT": file, "TOKENCAST_NATS_KEY": file}, "", true},
		{"creds and nkey", []string{url, "--nats-creds", file, "--nats-nkey", file}, nil, "", false},
		{"certificate without key", []string{url, "--nats-cert", file}, nil, "--nats-cert and --nats-key go together", false},
		{"key without certificate", nil, map[string]string{"TOKENCAST_NATS_URL": "nats://n:4222", "TOKENCAST_NATS_KEY": file}, "--nats-cert and --nats-key go together", false},
		{"missing key file", []string{url, "--nats-cert", file, "--nats-key", missing}, nil, "--nats-key: open " + missing, false},
		{"missing creds file", []string{url, "--nats-creds", missing}, nil, "--nats-creds: open " + missing, false},
		{"a directory as the CA", []string{url, "--nats-ca", dir}, nil, "--nats-ca: " + dir + " is a directory", false},
		{"certificate for the embedded NATS", []string{"--nats-cert", file, "--nats-key", file}, nil, "--nats-cert is for an external NATS: it needs --nats-url", false},
		{"nkey for the embedded NATS", []string{"--nats-nkey", file}, nil, "--nats-nkey is for an external NATS: it needs --nats-url", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && tc.cert && (c.NATS.Cert != file || c.NATS.Key != file):
				t.Fatalf("cert %q, key %q: want both %q", c.NATS.Cert, c.NATS.Key, file)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Parse: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestCommaLists: --allowed-hosts and --allowed-origins, from a flag or the
// environment, are lists with blanks and spaces dropped.
func TestCommaLists(t *testing.T) {
	for _, tc := range []struct {
		name           string
		args           []string
		env            map[string]string
		hosts, origins []string
	}{
		{"unset", nil, nil, nil, nil},
		{"flags", []string{"--allowed-hosts", " a.test, ,b.test ", "--allowed-origins", "https://x.test"}, nil, []string{"a.test", "b.test"}, []string{"https://x.test"}},
		{"environment", nil, map[string]string{"TOKENCAST_ALLOWED_ORIGINS": "https://x.test,https://y.test,"}, nil, []string{"https://x.test", "https://y.test"}},
		{"the last flag wins", []string{"--allowed-hosts", "a.test", "--allowed-hosts", "b.test"}, nil, []string{"b.test"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Server.AllowedHosts, tc.hosts) || !slices.Equal(c.Server.AllowedOrigins, tc.origins) {
				t.Fatalf("hosts %q, origins %q: want %q, %q", c.Server.AllowedHosts, c.Server.AllowedOrigins, tc.hosts, tc.origins)
			}
		})
	}
}
