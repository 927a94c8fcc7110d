package bus

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/tokencast/tokencast/internal/chat"
)

// startExternalNATS starts a JetStream server on a free loopback port, as an
// operator's cluster would be: tokencast reaches it over TCP with
// Config.URLs, not in process. configure adds the server's auth and TLS.
func startExternalNATS(t *testing.T, configure func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	configure(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return srv.ClientURL()
}

// openExternal opens the bus on an external NATS, giving up after wait: a
// connection that is refused must fail Open, not hang it.
func openExternal(t *testing.T, cfg Config, wait time.Duration) (*Bus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Cleanup(b.Close)
	}
	return b, err
}

// works shows the bus usable: its streams answer, and an event published
// is read back.
func works(t *testing.T, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	ev := chat.Event{Type: chat.EventDelta, SessionID: "s1", RequestID: "r1", Message: "hi", TimeStamp: time.Now()}
	if _, err := b.PublishEvent(ctx, ev, ""); err != nil {
		t.Fatal(err)
	}
	last, err := b.LastEvent(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if last == nil || last.Message != "hi" {
		t.Fatalf("last event %+v, want the delta %q", last, "hi")
	}
}

// TestExternalNATSWithNKey: a NATS whose only user is an NKey takes
// tokencast with --nats-nkey, and refuses it without the seed or with
// another one.
func TestExternalNATSWithNKey(t *testing.T) {
	seed, public := newNKeySeedFile(t)
	other, _ := newNKeySeedFile(t)
	url := startExternalNATS(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: public}}
	})

	t.Run("with the seed", func(t *testing.T) {
		b, err := openExternal(t, Config{DataDir: t.TempDir(), URLs: url, NKeySeedFile: seed}, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		works(t, b)
	})
	for _, tc := range []struct {
		name string
		seed string
	}{
		{"without a seed", ""},
		{"with another seed", other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// nats.go gives up on a server that refuses the same
			// credentials twice; Open says so without waiting out ctx.
			_, err := openExternal(t, Config{DataDir: t.TempDir(), URLs: url, NKeySeedFile: tc.seed}, 30*time.Second)
			if err == nil || !strings.Contains(err.Error(), "nats not connected: nats: Authorization Violation") {
				t.Fatalf("Open: %v, want an authorization violation", err)
			}
		})
	}
}

// newNKeySeedFile creates an NKey user and writes its seed to a file, as
// `nsc` or `nk -gen user` would.
func newNKeySeedFile(t *testing.T) (seedFile, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if public, err = kp.PublicKey(); err != nil {
		t.Fatal(err)
	}
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return seedFile, public
}
