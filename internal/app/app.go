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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/metrics"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/ratelimit"
	"github.com/tokencast/tokencast/internal/tracing"
	"github.com/tokencast/tokencast/internal/wsproto"
	"github.com/tokencast/tokencast/web"
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
	log := newLogger(cfg, stderr)
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
	api, worker := cfg.Server.Role != "worker", cfg.Server.Role != "api"

	file, err := readConfigFile(cfg.Providers.ConfigFile, log)
	if err != nil {
		return err
	}
	authn, err := authenticator(ctx, cfg, file)
	if err != nil {
		return err
	}
	dev := cfg.Server.Dev()
	if api {
		switch {
		case dev && !config.Loopback(cfg.Server.Addr):
			return fmt.Errorf("development mode listens only on a loopback address, not %s: use --mode prod with authentication", cfg.Server.Addr)
		case !dev && authn.Open():
			return fmt.Errorf("refusing to serve %s in production mode without authentication: set TOKENCAST_API_KEYS or --oidc-issuer", cfg.Server.Addr)
		case !dev && slices.Contains(cfg.Server.AllowedOrigins, "*"):
			return errors.New("--allowed-origins \"*\" is for development mode only: list the origins")
		}
	}
	if exposed := cfg.NATS.Listen != "" || cfg.NATS.ClusterListen != ""; exposed && !dev {
		if !cfg.NATS.Unauthenticated {
			return errors.New("refusing to open the embedded NATS (--nats-listen, --nats-cluster-listen) in production mode: it has no authentication, so anyone who reaches the port reads and writes every conversation; use an external NATS with credentials (--nats-url, --nats-creds), or firewall the ports and pass --nats-unauthenticated")
		}
		log.Warn("the embedded NATS listens without authentication (--nats-unauthenticated): firewall its ports", "nats_listen", cfg.NATS.Listen, "nats_cluster_listen", cfg.NATS.ClusterListen)
	}

	b, err := bus.Open(ctx, bus.Config{
		DataDir: cfg.NATS.DataDir, EventRetention: cfg.NATS.EventRetention, SessionTTL: cfg.NATS.SessionTTL, MaxDeliver: cfg.NATS.MaxDeliver, AckWait: cfg.NATS.AckWait,
		URLs: cfg.NATS.URL, CredsFile: cfg.NATS.Creds, NKeySeedFile: cfg.NATS.NKey, CAFile: cfg.NATS.CA,
		CertFile: cfg.NATS.Cert, KeyFile: cfg.NATS.Key,
		Listen: cfg.NATS.Listen, Replicas: cfg.NATS.Replicas,
		ClusterListen: cfg.NATS.ClusterListen, Routes: cfg.NATS.Routes, ClusterName: cfg.NATS.ClusterName, ServerName: cfg.NATS.ServerName,
	}, log)
	if err != nil {
		return err
	}
	defer b.Close()

	models, modelNames, defaultModel, err := models(ctx, cfg, file, opts.Models)
	if err != nil {
		return err
	}

	met := metrics.New()
	met.Gauge("tokencast_requests_waiting", "Accepted requests no worker has taken yet (the whole cluster's queue).", func() float64 {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		waiting, _, _ := b.QueueDepth(qctx)
		return float64(waiting)
	})
	met.Gauge("tokencast_requests_in_flight", "Requests a worker holds and has not finished (the whole cluster's).", func() float64 {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, inFlight, _ := b.QueueDepth(qctx)
		return float64(inFlight)
	})
	// /metrics is on the public port unless an internal listener takes it.
	var publicMetrics http.Handler = met.Handler()
	if cfg.Server.InternalAddr != "" {
		publicMetrics = nil
	}
	var stopping atomic.Bool
	ready := map[string]gateway.Readiness{
		"nats":    b.Ready,
		"storage": b.Writable,
		"serving": func(context.Context) error {
			if stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
	}

	var orch *orchestrator.Orchestrator
	if worker {
		orch = orchestrator.New(orchestrator.Config{
			Workers:      cfg.Worker.Count,
			Coalescing:   orchestrator.Coalescing{Window: cfg.Worker.Coalesce.Window, Bytes: cfg.Worker.Coalesce.Bytes, Chunks: cfg.Worker.Coalesce.Chunks},
			DefaultModel: defaultModel,
			Heartbeat:    cfg.NATS.AckWait / 3,
			Policy: orchestrator.Policy{
				FirstToken: cfg.Worker.FirstTokenTimeout, Idle: cfg.Worker.IdleTimeout, Retries: cfg.Worker.ProviderRetries, Budget: cfg.Worker.RetryBudget,
			},
			Recorder: met,
		}, b, models, log)
		ready["workers"] = func(context.Context) error {
			if !orch.Pulling() {
				return errors.New("workers are not taking requests")
			}
			return nil
		}
	}

	var (
		h   *hub.Hub
		ws  *wsproto.Server
		gw  *gateway.Gateway
		mux http.Handler
	)
	if api {
		proxies, err := auth.ParseProxies(cfg.Server.TrustedProxies)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		refusals := ratelimit.NewRefusals(log)
		h = hub.New(b, log, hub.Config{MaxPending: cfg.Streams.QueueSize * 4, LateJoinWindow: cfg.Streams.LateJoinWindow, LateJoinGrace: cfg.Streams.LateJoinGrace})
		defer h.Close()
		guard := auth.NewGuard(b, ratelimit.New(cfg.Limits.SessionRate, cfg.Limits.SessionBurst), log)
		es := graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{
			Store: b, MaxMessageBytes: cfg.Limits.MaxMessageBytes, Log: log,
			ModelNames: modelNames, DefaultModel: defaultModel,
			Sessions: guard, Asks: ratelimit.New(cfg.Limits.AskRate, cfg.Limits.AskBurst), Refusals: refusals,
			Accepting: func() bool { return !stopping.Load() },
			Asked:     met.Asked,
		}})
		limits := graph.Limits{MaxDepth: cfg.Limits.MaxDepth, MaxAliases: cfg.Limits.MaxAliases, MaxComplexity: cfg.Limits.MaxComplexity, MaxFields: cfg.Limits.MaxFields, Introspection: dev, Suggestions: dev,
			OperationTimeout: cfg.Limits.OperationTimeout}
		ops := graph.NewOperations(es, limits, guard)
		// One set of connection caps for WebSocket and SSE alike.
		conns := ratelimit.NewConns(cfg.Limits.MaxConns, cfg.Limits.MaxConnsPerPrincipal).WithPending(cfg.Limits.MaxPendingConns, cfg.Limits.MaxPendingPerAddr)
		ws = wsproto.NewServer(wsproto.Config{
			ReadLimit: cfg.Streams.WSReadLimit, WriteTimeout: cfg.Streams.WriteTimeout, QueueSize: cfg.Streams.QueueSize,
			QueueBytes: cfg.Streams.QueueBytes, MaxResultBytes: cfg.Streams.MaxResultBytes,
			InitTimeout: cfg.Streams.InitTimeout, MaxSubscriptions: cfg.Streams.MaxSubscriptions, AllowedOrigins: cfg.Server.AllowedOrigins,
			Conns: conns, TokenGrace: cfg.Auth.TokenGrace, Proxies: proxies, Refusals: refusals,
			MaxPayload: cfg.Dialects.AppSync.MaxPayload, KeepAlive: cfg.Dialects.KeepAlive, ConnectionTimeout: cfg.Dialects.AppSync.ConnectionTimeout,
			OnSlow: met.SlowConsumer, OnConn: met.Connected,
		}, ops, h, authn, log)
		met.Gauge("tokencast_websocket_connections", "Open WebSocket connections on this node.", func() float64 { return float64(ws.Conns()) })
		met.Gauge("tokencast_subscriptions", "Subscriptions attached on this node (WebSocket and SSE).", func() float64 { return float64(h.Subscribers()) })
		met.Gauge("tokencast_watched_sessions", "Sessions this node watches: one NATS interest each.", func() float64 { return float64(h.Sessions()) })
		sigv4, err := auth.ParseSigV4Keys(cfg.Auth.SigV4Keys, cfg.Auth.SigV4MaxSkew)
		if err != nil {
			return fmt.Errorf("TOKENCAST_SIGV4_KEYS: %w", err)
		}
		var verifier gateway.SignatureVerifier
		if sigv4.Len() > 0 {
			verifier = sigv4
		}
		gw = gateway.New(gateway.Config{
			MaxBodyBytes: cfg.Server.MaxBodyBytes, QueueSize: cfg.Streams.QueueSize, WriteTimeout: cfg.Streams.WriteTimeout, MaxResultBytes: cfg.Streams.MaxResultBytes,
			AllowedOrigins: cfg.Server.AllowedOrigins, SigV4: verifier, UI: web.Dist(), Metrics: publicMetrics,
			OnSSE: func(delta int) { met.Connected("sse", delta) },
			Conns: conns, TokenGrace: cfg.Auth.TokenGrace, Proxies: proxies, Refusals: refusals,
			LoopbackHostsOnly: dev, AllowedHosts: cfg.Server.AllowedHosts,
		}, es, limits, ops, h, authn, ws, ready, version, log)
		mux = gw.Handler()
	} else {
		mux = gateway.HealthHandler(ready, publicMetrics)
	}

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
		stopping.Store(true)
		log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout)
		defer cancel()
		stopPulling()
		var wg sync.WaitGroup
		if api {
			gw.Shutdown()
			wg.Go(func() { _ = ws.Shutdown(sctx) })
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

func authenticator(ctx context.Context, cfg *config.Config, file modelFile) (*auth.Authenticator, error) {
	clients, err := auth.ParseKeys(cfg.Auth.APIKeys, auth.Client)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_API_KEYS: %w", err)
	}
	if err := clients.Add(strings.Join(file.APIKeys, ","), auth.Client); err != nil {
		return nil, fmt.Errorf("--config api_keys: %w", err)
	}
	if err := clients.AddPublic(cfg.Auth.PublicKeys); err != nil {
		return nil, fmt.Errorf("TOKENCAST_PUBLIC_KEYS: %w", err)
	}
	if err := clients.AddPublic(strings.Join(file.PublicKeys, ",")); err != nil {
		return nil, fmt.Errorf("--config public_keys: %w", err)
	}
	services, err := auth.ParseKeys(cfg.Auth.ServiceKeys, auth.Service)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_SERVICE_KEYS: %w", err)
	}
	if err := services.Add(strings.Join(file.ServiceKeys, ","), auth.Service); err != nil {
		return nil, fmt.Errorf("--config service_keys: %w", err)
	}
	var tokens auth.TokenVerifier
	if cfg.Auth.OIDC.Issuer != "" {
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: cfg.Auth.OIDC.Issuer, Audience: cfg.Auth.OIDC.Audience, UserClaim: cfg.Auth.OIDC.UserClaim, Skew: cfg.Auth.OIDC.Skew})
		if err != nil {
			return nil, err
		}
		tokens = o
	}
	return auth.NewAuthenticator(clients, services, tokens), nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
