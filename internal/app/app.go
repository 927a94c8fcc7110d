// Package app builds tokencast from its configuration: the one place that
// wires the parts together and owns their lifetimes.
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
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/tracing"
)

// DefaultModel is the model answering when nothing else is configured.
const DefaultModel = "demo:default"

// Options are what a program embedding the server adds beyond its
// configuration; the zero value is the plain server.
type Options struct {
	// Models are served beside the configured models, keyed by the name a
	// request uses ("provider:id"). tokencast bench registers its fake LLM
	// here so token emission and receipt are timed on one clock.
	Models map[string]orchestrator.Provider
}

// Serve runs the server until ctx ends, then shuts it down gracefully:
// readiness turns false, new asks and connections are refused, answers in
// flight may finish until the shutdown timeout, unfinished requests are handed
// back for another worker, and clients are told to reconnect.
func Serve(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer) error {
	return ServeWith(ctx, cfg, version, stdout, stderr, Options{})
}

// ServeWith is Serve with the additions in opts.
func ServeWith(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer, opts Options) error {
	log := newLogger(cfg.Log, stderr)
	stopTracing, err := tracing.Setup(ctx, cfg.Getenv, version)
	if err != nil {
		return err
	}
	defer func() {
		// A collector that is down must not hold the exit up.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(tctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	s, err := build(ctx, cfg, version, opts, log)
	if err != nil {
		return err
	}
	defer s.close()
	authn, dev, met, orch, mux := s.authn, s.dev, s.met, s.orch, s.handler

	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if cfg.Server.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		// HTTP/1.1 only: WebSocket upgrades need it, and one protocol keeps
		// the connection engine's accounting simple.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
		scheme = "https"
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	mode := "production mode"
	switch {
	case dev && authn.Open():
		mode = "open development mode: no TOKENCAST_API_KEYS, loopback only"
	case dev:
		mode = "development mode"
	}
	fmt.Fprintf(stdout, "tokencast %s listening on %s://%s (role %s, %s)\n", version, scheme, ln.Addr(), cfg.Server.Role, mode)
	log.Info("serving", "addr", ln.Addr().String(), "tls", scheme == "https", "role", cfg.Server.Role, "open", authn.Open(), "workers", cfg.Worker.Count, "data_dir", cfg.NATS.DataDir)

	var internal *http.Server
	if cfg.Server.InternalAddr != "" {
		iln, err := net.Listen("tcp", cfg.Server.InternalAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on --internal-addr: %w", err)
		}
		internal = &http.Server{Handler: gateway.InternalHandler(met.Handler(), cfg.Server.Pprof), ReadHeaderTimeout: 10 * time.Second}
		log.Info("internal listener", "addr", iln.Addr().String(), "pprof", cfg.Server.Pprof)
		go func() { _ = internal.Serve(iln) }()
		defer internal.Close()
	}

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
	if orch != nil {
		g.Go(func() error {
			defer close(workersDone)
			return orch.Run(pull, work)
		})
	} else {
		close(workersDone)
	}
	g.Go(func() error {
		<-gctx.Done()
		s.stopping.Store(true)
		log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout)
		defer cancel()
		stopPulling()
		var wg sync.WaitGroup
		if s.servesAPI() {
			s.gw.Shutdown()
			wg.Go(func() { _ = s.ws.Shutdown(sctx) })
		}
		wg.Go(func() {
			// Answers in flight may finish; what is left at the deadline is
			// handed back to another worker.
			select {
			case <-workersDone:
			case <-sctx.Done():
				log.Warn("shutdown timeout: handing unfinished answers back")
				stopWork()
			}
		})
		// Readiness is false from here: give load balancers the drain delay
		// to notice before the port closes.
		if cfg.Server.DrainDelay > 0 {
			select {
			case <-time.After(cfg.Server.DrainDelay):
			case <-sctx.Done():
			}
		}
		err := srv.Shutdown(sctx)
		wg.Wait()
		stopWork()
		if errors.Is(err, context.DeadlineExceeded) {
			_ = srv.Close()
			err = nil
		}
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// newLogger logs to w at the level and in the format configured.
func newLogger(l config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
