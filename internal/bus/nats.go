// The connection to NATS: the embedded server (its options, its log, its
// cluster routes) or an external cluster, and the creation of every stream
// and bucket once JetStream answers (setup calls each noun's own).

package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// setupWhenReady creates the streams, waiting while a cluster forms: until
// its nodes have met and elected a JetStream leader, and enough of them are
// up for the replicas asked, creating a stream fails.
func (b *Bus) setupWhenReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.setup(sctx)
		cancel()
		if err == nil {
			return nil
		}
		// One reading of the connection for everything below: nats.go
		// reports why an attempt failed from another goroutine, and two
		// readings could straddle that report, giving an error without
		// its reason or logging a certificate problem as a retry.
		conn := b.connState()
		err = conn.whyNotConnected(err)
		// nats.go closes the connection for good when a server refuses the
		// same credentials twice: waiting longer cannot help.
		// Nor can it when TLS failed on a certificate, ours or the server's.
		if ctx.Err() != nil || time.Now().After(deadline) || conn.status == nats.CLOSED || certificateRefused(conn.last) {
			return err
		}
		if conn.connected() || conn.last != nil {
			b.log.Warn("NATS JetStream not ready yet; retrying", "err", err)
		} else {
			// The first connection attempt has not finished: with no
			// reconnect buffer, requests fail at once until it has.
			b.log.Debug("NATS not connected yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return b.connState().whyNotConnected(ctx.Err())
		case <-time.After(wait):
		}
	}
}

// certificateRefused says err is a TLS certificate problem on either side:
// this process does not trust the server's certificate, or the server
// refused this process's. A configuration error, not an outage.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &verify) || errors.As(err, &alert)
}

// connState is one reading of the connection to NATS: its status and
// lastConnError.
type connState struct {
	status nats.Status
	last   error
}

func (b *Bus) connState() connState {
	return connState{status: b.nc.Status(), last: b.lastConnError()}
}

// connected is nats.Conn.IsConnected for this reading.
func (s connState) connected() bool {
	switch s.status {
	case nats.CONNECTED, nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return true
	}
	return false
}

// whyNotConnected adds to err, when NATS was not connected, the reason the
// server last gave: a timeout alone does not say that it refused our
// credentials or our certificate.
func (s connState) whyNotConnected(err error) error {
	if s.connected() {
		return err
	}
	if s.last != nil {
		return fmt.Errorf("%w; nats not connected: %w", err, s.last)
	}
	return fmt.Errorf("%w; nats not connected (%s)", err, s.status)
}

// lastConnError is the server's last word on a failed connection (a refused
// certificate, an authorization violation), else why it could not be
// reached.
func (b *Bus) lastConnError() error {
	if err := b.nc.LastError(); err != nil {
		return err
	}
	if p := b.dialErr.Load(); p != nil {
		return *p
	}
	return nil
}

// noteDialError records why an attempt to reach NATS failed; nil, that one
// succeeded.
func (b *Bus) noteDialError(err error) {
	if err == nil {
		b.dialErr.Store(nil)
		return
	}
	b.dialErr.Store(&err)
}

// embed starts a NATS server in this process and connects to it in process.
func embed(cfg Config, log *slog.Logger) (*server.Server, *nats.Conn, error) {
	opts := &server.Options{
		ServerName:         "tokencast",
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "nats"),
		DontListen:         cfg.Listen == "",
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 256 << 20,
		MaxPayload:         8 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort("nats listen", cfg.Listen)
		if err != nil {
			return nil, nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if err := clusterOptions(cfg, opts); err != nil {
		return nil, nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("create embedded nats: %w", err)
	}
	// Its warnings and errors (a damaged store it repaired, a disk it
	// cannot write) are ours to report.
	srv.SetLogger(natsLogger{log.With("component", "nats")}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, nil, errors.New("embedded nats did not become ready")
	}
	// No reconnect buffer, as for an external NATS (connectExternal).
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("tokencast"), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return srv, nc, nil
}

// natsLogger passes the embedded server's log to ours: its notices at
// debug (it is chatty at start), warnings at warn, errors at error.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l natsLogger) Warnf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }

func (l natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }

func (l natsLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }

func (l natsLogger) Debugf(format string, v ...any) {}

func (l natsLogger) Tracef(format string, v ...any) {}

// clusterOptions makes the embedded server a cluster node when routes are
// configured. A node must listen for routes, so DontListen is off; clients
// may still reach it only in process unless --nats-listen is set (a random
// loopback port is opened then, as the server needs one).
func clusterOptions(cfg Config, opts *server.Options) error {
	if cfg.ClusterListen == "" && cfg.Routes == "" {
		return nil
	}
	if cfg.ClusterListen == "" || cfg.Routes == "" {
		return errors.New("a NATS cluster node needs both a cluster listen address and routes")
	}
	host, port, err := splitHostPort("nats cluster listen", cfg.ClusterListen)
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = "tokencast"
	}
	opts.Routes = server.RoutesFromStr(cfg.Routes)
	if len(opts.Routes) == 0 {
		return fmt.Errorf("nats routes %q: no route URL", cfg.Routes)
	}
	opts.ServerName = cfg.ServerName
	if opts.ServerName == "" {
		if opts.ServerName, err = os.Hostname(); err != nil {
			return fmt.Errorf("nats server name: %w", err)
		}
	}
	if opts.DontListen {
		opts.DontListen = false
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	}
	return nil
}

func splitHostPort(what, addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("%s port %q: %w", what, port, err)
	}
	return host, n, nil
}

// connectExternal connects to a NATS cluster, reconnecting forever. It tells
// noteDialError why each failed attempt failed, and nil once one succeeds.
func connectExternal(cfg Config, noteDialError func(error)) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("tokencast"),
		nats.MaxReconnects(-1),
		// Nothing is kept to send again after a reconnect: a publish made
		// while disconnected fails at once, instead of landing later,
		// after it was reported failed (PublishEventAfter relies on it).
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { noteDialError(err) }),
		nats.ConnectHandler(func(*nats.Conn) { noteDialError(nil) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("nats client certificate: needs both a certificate and a key file")
		}
		// Loaded here as well as by nats.go, to say which files are wrong.
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("nats client certificate %s, key %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	nc, err := nats.Connect(cfg.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", cfg.URLs, err)
	}
	return nc, nil
}

func (b *Bus) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	for _, step := range []func(context.Context) error{
		b.setupQueue, b.setupDead, b.setupEvents, b.setupTurns,
		b.setupCancels, b.setupSessions, b.setupAttempts, b.setupHealth, b.setupApprovals,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}
