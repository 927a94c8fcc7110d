package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	return startExternalNATSServer(t, configure).ClientURL()
}

// startExternalNATSServer is startExternalNATS, returning the server.
func startExternalNATSServer(t *testing.T, configure func(*server.Options)) *server.Server {
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
	return srv
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

// TestExternalNATSWithClientCertificate: a NATS that requires TLS and
// verifies client certificates (mutual TLS) takes tokencast with --nats-ca,
// --nats-cert and --nats-key, and refuses it, with an error that says why,
// when a piece is missing.
func TestExternalNATSWithClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	url := startExternalNATS(t, func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		o.TLSConfig, o.TLS, o.TLSVerify, o.TLSTimeout = tc, true, true, 2
	})

	t.Run("with the client certificate", func(t *testing.T) {
		b, err := openExternal(t, Config{DataDir: t.TempDir(), URLs: url, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		works(t, b)
	})

	// When the server refuses the client's certificate, the client sees
	// either TLS's alert or, if it wrote first, the connection closed.
	refused := regexp.MustCompile(`nats not connected: .*(tls: certificate required|closed by remote after TLS handshake)`)
	for _, tc := range []struct {
		name string
		cfg  Config
		want *regexp.Regexp
	}{
		{"without a client certificate", Config{CAFile: pki.ca}, refused},
		{"without the CA", Config{CertFile: pki.clientCert, KeyFile: pki.clientKey},
			regexp.MustCompile(`nats not connected: .*certificate signed by unknown authority`)},
		// Go's client offers only a certificate the server's CAs signed.
		{"a certificate from another CA", Config{CAFile: pki.ca, CertFile: pki.strangerCert, KeyFile: pki.strangerKey}, refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.DataDir, tc.cfg.URLs = t.TempDir(), url
			_, err := openExternal(t, tc.cfg, time.Second)
			if err == nil || !tc.want.MatchString(err.Error()) {
				t.Fatalf("Open: %v, want an error matching %q", err, tc.want)
			}
		})
	}
}

// TestExternalNATSClientCertificateFiles: certificate files that cannot be
// used fail Open at once, naming the files.
func TestExternalNATSClientCertificateFiles(t *testing.T) {
	pki := newTestPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"certificate without key", pki.clientCert, "", "needs both a certificate and a key file"},
		{"key without certificate", "", pki.clientKey, "needs both a certificate and a key file"},
		{"missing certificate", missing, pki.clientKey, missing},
		{"key of another certificate", pki.clientCert, pki.strangerKey, "private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Nothing listens there: the files are refused before any dial.
			_, err := openExternal(t, Config{DataDir: t.TempDir(), URLs: "nats://127.0.0.1:1", CAFile: pki.ca, CertFile: tc.cert, KeyFile: tc.key}, time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error saying %q", err, tc.want)
			}
		})
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

// testPKI holds PEM files: a CA, a server certificate for 127.0.0.1 and a
// client certificate it signed, and a client certificate of another CA.
type testPKI struct {
	ca                        string
	serverCert, serverKey     string
	clientCert, clientKey     string
	strangerCert, strangerKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "tokencast test CA")
	other, otherKey := newCA(t, "another CA")
	var p testPKI
	p.ca = writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	p.serverCert, p.serverKey = issue(t, dir, "server", ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "nats"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	client := x509.Certificate{Subject: pkix.Name{CommonName: "tokencast"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	p.clientCert, p.clientKey = issue(t, dir, "client", ca, caKey, &client)
	p.strangerCert, p.strangerKey = issue(t, dir, "stranger", other, otherKey, &client)
	return p
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue signs tmpl with the CA and writes the certificate and its key.
func issue(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	c := *tmpl
	c.SerialNumber = big.NewInt(time.Now().UnixNano())
	c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	c.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, &c, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExternalNATSCertificateProblemFailsAtOnce: a NATS whose certificate
// this process does not trust is a configuration error: Open says so after
// its first attempt instead of retrying while a cluster would form.
func TestExternalNATSCertificateProblemFailsAtOnce(t *testing.T) {
	pki := newTestPKI(t)
	url := startExternalNATS(t, func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey})
		if err != nil {
			t.Fatal(err)
		}
		o.TLSConfig, o.TLS, o.TLSTimeout = tc, true, 2
	})
	var logged strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), nil))
	// Long enough that retrying would be seen in the log before it ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Open(ctx, Config{DataDir: t.TempDir(), URLs: url}, log) // no --nats-ca
	if err == nil {
		b.Close()
		t.Fatal("Open trusted a certificate from an unknown authority")
	}
	if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("Open: %v, want it to say the certificate's authority is unknown", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open: %v, want it to give up on its own, not when its context ended", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logged.String(), "retrying") {
		t.Fatalf("Open retried a certificate problem:\n%s", logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
