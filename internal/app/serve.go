package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokencast/tokencast/internal/gateway"
)

// serve opens the listeners, says where it serves, and runs until ctx
// ends; then it shuts down.
func (s *server) serve(ctx context.Context, stdout io.Writer) error {
	ln, scheme, err := s.listen()
	if err != nil {
		return err
	}
	srv := s.httpServer()
	s.announce(stdout, ln.Addr(), scheme)
	stopInternal, err := s.serveInternal()
	if err != nil {
		ln.Close()
		return err
	}
	defer stopInternal()
	return s.run(ctx, srv, ln)
}

// listen opens --addr, with TLS when a certificate is configured, and
// names its scheme.
func (s *server) listen() (net.Listener, string, error) {
	cfg := s.cfg
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen: %w", err)
	}
	if cfg.Server.TLSCert == "" {
		return ln, "http", nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
	if err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	// HTTP/1.1 only: WebSocket upgrades need it, and one protocol keeps
	// the connection engine's accounting simple.
	ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	return ln, "https", nil
}

// httpServer serves the role's handler with the HTTP timeouts.
func (s *server) httpServer() *http.Server {
	cfg := s.cfg
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// announce tells the operator where the server listens and in which mode.
func (s *server) announce(stdout io.Writer, addr net.Addr, scheme string) {
	cfg, dev, authn := s.cfg, s.dev, s.authn
	mode := "production mode"
	switch {
	case dev && authn.Open():
		mode = "open development mode: no TOKENCAST_API_KEYS, loopback only"
	case dev:
		mode = "development mode"
	}
	fmt.Fprintf(stdout, "tokencast %s listening on %s://%s (role %s, %s)\n", s.version, scheme, addr, cfg.Server.Role, mode)
	s.log.Info("serving", "addr", addr.String(), "tls", scheme == "https", "role", cfg.Server.Role, "open", authn.Open(), "workers", cfg.Worker.Count, "data_dir", cfg.NATS.DataDir)
}

// serveInternal serves /metrics, and the profiles with --pprof, on
// --internal-addr when it is set. stop closes that listener.
func (s *server) serveInternal() (stop func(), err error) {
	cfg := s.cfg
	if cfg.Server.InternalAddr == "" {
		return func() {}, nil
	}
	iln, err := net.Listen("tcp", cfg.Server.InternalAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --internal-addr: %w", err)
	}
	internal := &http.Server{Handler: gateway.InternalHandler(s.met.Handler(), cfg.Server.Pprof), ReadHeaderTimeout: 10 * time.Second}
	s.log.Info("internal listener", "addr", iln.Addr().String(), "pprof", cfg.Server.Pprof)
	go func() { _ = internal.Serve(iln) }()
	return func() { internal.Close() }, nil
}

// run serves srv on ln and runs the workers until ctx ends, then shuts
// both down.
func (s *server) run(ctx context.Context, srv *http.Server, ln net.Listener) error {
	// pull ends when shutdown starts; work when the shutdown timeout is up.
	pull, stopPulling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPulling()
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	workersDone := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if orch := s.orch; orch != nil {
		g.Go(func() error {
			defer close(workersDone)
			return orch.Run(pull, work)
		})
	} else {
		close(workersDone)
	}
	g.Go(func() error {
		<-gctx.Done()
		return s.shutdown(ctx, srv, stopPulling, stopWork, workersDone)
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
