// Package app builds tokencast from its configuration: the one place that
// wires the parts together and owns their lifetimes.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/provider/demo"
	"github.com/tokencast/tokencast/internal/ratelimit"
	"github.com/tokencast/tokencast/internal/wsproto"
)

// DefaultModel is the model answering when nothing else is configured.
const DefaultModel = "demo:default"

// Options are what a program embedding the server adds beyond its
// configuration; the zero value is the plain server.
type Options struct {
	// Models are served beside the default model, keyed by the name a
	// request uses ("provider:id"). tokencast bench registers its fake LLM
	// here so token emission and receipt are timed on one clock.
	Models map[string]orchestrator.Provider
}

// Serve runs the server until ctx ends, then shuts it down gracefully.
func Serve(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer) error {
	return ServeWith(ctx, cfg, version, stdout, stderr, Options{})
}

// ServeWith is Serve with the additions in opts.
func ServeWith(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer, opts Options) error {
	log := newLogger(cfg, stderr)
	clients, err := auth.ParseKeys(cfg.APIKeys, auth.Client)
	if err != nil {
		return fmt.Errorf("TOKENCAST_API_KEYS: %w", err)
	}
	services, err := auth.ParseKeys(cfg.ServiceKeys, auth.Service)
	if err != nil {
		return fmt.Errorf("TOKENCAST_SERVICE_KEYS: %w", err)
	}
	var tokens auth.TokenVerifier
	if cfg.OIDCIssuer != "" {
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: cfg.OIDCIssuer, Audience: cfg.OIDCAudience, UserClaim: cfg.OIDCUserClaim, Skew: cfg.OIDCSkew})
		if err != nil {
			return err
		}
		tokens = o
	}
	authn := auth.NewAuthenticator(clients, services, tokens)
	dev := cfg.Dev()
	switch {
	case dev && !config.Loopback(cfg.Addr):
		return fmt.Errorf("development mode listens only on a loopback address, not %s: use --mode prod with authentication", cfg.Addr)
	case !dev && authn.Open():
		return fmt.Errorf("refusing to serve %s in production mode without authentication: set TOKENCAST_API_KEYS or --oidc-issuer", cfg.Addr)
	case !dev && slices.Contains(cfg.AllowedOrigins, "*"):
		return errors.New("--allowed-origins \"*\" is for development mode only: list the origins")
	}

	b, err := bus.Open(ctx, bus.Config{DataDir: cfg.DataDir, EventRetention: cfg.EventRetention, MaxDeliver: cfg.MaxDeliver}, log)
	if err != nil {
		return err
	}
	defer b.Close()
	h := hub.New(b, log, cfg.QueueSize*4)
	defer h.Close()

	models := map[string]orchestrator.Model{
		DefaultModel: {Ref: DefaultModel, ID: "default", Provider: &demo.Provider{TTFT: cfg.DemoTTFT, TokenInterval: cfg.DemoTokenGap}},
	}
	modelNames := []string{DefaultModel}
	for name, p := range opts.Models {
		_, id, _ := strings.Cut(name, ":")
		models[name] = orchestrator.Model{Ref: name, ID: id, Provider: p}
		modelNames = append(modelNames, name)
	}
	slices.Sort(modelNames[1:])

	var stopping atomic.Bool
	guard := auth.NewGuard(b)
	es := graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{
		Store: b, MaxMessageBytes: cfg.MaxMessageBytes, Log: log,
		ModelNames: modelNames, DefaultModel: DefaultModel,
		Sessions: guard, Asks: ratelimit.New(cfg.AskRate, cfg.AskBurst),
		Accepting: func() bool { return !stopping.Load() },
	}})
	limits := graph.Limits{MaxDepth: cfg.MaxDepth, MaxAliases: cfg.MaxAliases, MaxComplexity: cfg.MaxComplexity, Introspection: dev}
	ops := graph.NewOperations(es, limits, guard)
	ws := wsproto.NewServer(wsproto.Config{
		ReadLimit: cfg.WSReadLimit, WriteTimeout: cfg.WriteTimeout, QueueSize: cfg.QueueSize,
		InitTimeout: cfg.InitTimeout, MaxSubscriptions: cfg.MaxSubs, AllowedOrigins: cfg.AllowedOrigins,
		MaxConns: cfg.MaxConns, MaxConnsPerPrincipal: cfg.MaxConnsPerPrincipal, TokenGrace: cfg.TokenGrace,
	}, ops, h, authn, log)
	orch := orchestrator.New(orchestrator.Config{
		Workers:      cfg.Workers,
		Coalescing:   orchestrator.Coalescing{Window: cfg.CoalesceWindow, Bytes: cfg.CoalesceBytes, Chunks: cfg.CoalesceChunks},
		DefaultModel: DefaultModel,
	}, b, models, log)

	ready := map[string]gateway.Readiness{
		"nats": b.Ready,
		"workers": func(context.Context) error {
			if n := orch.Running(); n < cfg.Workers {
				return fmt.Errorf("%d of %d workers running", n, cfg.Workers)
			}
			return nil
		},
		"serving": func(context.Context) error {
			if stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
	}
	gw := gateway.New(gateway.Config{MaxBodyBytes: cfg.MaxBodyBytes, QueueSize: cfg.QueueSize, WriteTimeout: cfg.WriteTimeout},
		es, limits, ops, h, authn, ws, ready, version, log)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
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
	fmt.Fprintf(stdout, "tokencast %s listening on http://%s (%s)\n", version, ln.Addr(), mode)
	log.Info("serving", "addr", ln.Addr().String(), "open", authn.Open(), "workers", cfg.Workers, "data_dir", cfg.DataDir)

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return orch.Run(workCtx) })
	g.Go(func() error {
		<-gctx.Done()
		stopping.Store(true)
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		_ = ws.Shutdown(sctx)
		err := srv.Shutdown(sctx)
		stopWork()
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
