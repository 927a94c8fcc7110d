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
	"github.com/tokencast/tokencast/internal/sse"
	"github.com/tokencast/tokencast/internal/stream"
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
	api, worker := cfg.Role != "worker", cfg.Role != "api"

	file, err := readConfigFile(cfg.ConfigFile, log)
	if err != nil {
		return err
	}
	authn, err := authenticator(ctx, cfg, file)
	if err != nil {
		return err
	}
	dev := cfg.Dev()
	if api {
		switch {
		case dev && !config.Loopback(cfg.Addr):
			return fmt.Errorf("development mode listens only on a loopback address, not %s: use --mode prod with authentication", cfg.Addr)
		case !dev && authn.Open():
			return fmt.Errorf("refusing to serve %s in production mode without authentication: set TOKENCAST_API_KEYS or --oidc-issuer", cfg.Addr)
		case !dev && slices.Contains(cfg.AllowedOrigins, "*"):
			return errors.New("--allowed-origins \"*\" is for development mode only: list the origins")
		}
	}
	if exposed := cfg.NATSListen != "" || cfg.NATSClusterListen != ""; exposed && !dev {
		if !cfg.NATSUnauthenticated {
			return errors.New("refusing to open the embedded NATS (--nats-listen, --nats-cluster-listen) in production mode: it has no authentication, so anyone who reaches the port reads and writes every conversation; use an external NATS with credentials (--nats-url, --nats-creds), or firewall the ports and pass --nats-unauthenticated")
		}
		log.Warn("the embedded NATS listens without authentication (--nats-unauthenticated): firewall its ports", "nats_listen", cfg.NATSListen, "nats_cluster_listen", cfg.NATSClusterListen)
	}

	b, err := bus.Open(ctx, bus.Config{
		DataDir: cfg.DataDir, EventRetention: cfg.EventRetention, SessionTTL: cfg.SessionTTL, MaxDeliver: cfg.MaxDeliver, AckWait: cfg.AckWait,
		URLs: cfg.NATSURL, CredsFile: cfg.NATSCreds, NKeySeedFile: cfg.NATSNKey, CAFile: cfg.NATSCA,
		CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey,
		Listen: cfg.NATSListen, Replicas: cfg.Replicas,
		ClusterListen: cfg.NATSClusterListen, Routes: cfg.NATSRoutes, ClusterName: cfg.NATSClusterName, ServerName: cfg.NATSServerName,
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
	if cfg.InternalAddr != "" {
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
			Workers:      cfg.Workers,
			Coalescing:   orchestrator.Coalescing{Window: cfg.CoalesceWindow, Bytes: cfg.CoalesceBytes, Chunks: cfg.CoalesceChunks},
			DefaultModel: defaultModel,
			Heartbeat:    cfg.AckWait / 3,
			Policy: orchestrator.Policy{
				FirstToken: cfg.FirstTokenTimeout, Idle: cfg.IdleTimeout, Retries: cfg.ProviderRetries, Budget: cfg.RetryBudget,
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
		h      *hub.Hub
		ws     *wsproto.Server
		events *sse.Server
		mux    http.Handler
	)
	if api {
		proxies, err := auth.ParseProxies(cfg.TrustedProxies)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		refusals := ratelimit.NewRefusals(log)
		h = hub.New(b, log, hub.Config{MaxPending: cfg.QueueSize * 4, LateJoinWindow: cfg.LateJoinWindow, LateJoinGrace: cfg.LateJoinGrace})
		defer h.Close()
		guard := auth.NewGuard(b, ratelimit.New(cfg.SessionRate, cfg.SessionBurst), log)
		es := graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{
			Store: b, MaxMessageBytes: cfg.MaxMessageBytes, Log: log,
			ModelNames: modelNames, DefaultModel: defaultModel,
			Sessions: guard, Asks: ratelimit.New(cfg.AskRate, cfg.AskBurst), Refusals: refusals,
			Accepting: func() bool { return !stopping.Load() },
			Asked:     met.Asked,
		}})
		limits := graph.Limits{MaxDepth: cfg.MaxDepth, MaxAliases: cfg.MaxAliases, MaxComplexity: cfg.MaxComplexity, MaxFields: cfg.MaxFields, Introspection: dev, Suggestions: dev,
			OperationTimeout: cfg.OperationTimeout}
		ops := graph.NewOperations(es, limits, guard, log)
		// One set of connection caps for WebSocket and SSE alike.
		conns := ratelimit.NewConns(cfg.MaxConns, cfg.MaxConnsPerPrincipal).WithPending(cfg.MaxPendingConns, cfg.MaxPendingPerAddr)
		policy := stream.NewPolicy(stream.Config{
			Conns: conns, AllowedOrigins: cfg.AllowedOrigins, TokenGrace: cfg.TokenGrace, Proxies: proxies, Refusals: refusals,
		}, authn, log)
		ws = wsproto.NewServer(wsproto.Config{
			ReadLimit: cfg.WSReadLimit, WriteTimeout: cfg.WriteTimeout, QueueSize: cfg.QueueSize,
			QueueBytes: cfg.QueueBytes, MaxResultBytes: cfg.MaxResultBytes,
			InitTimeout: cfg.InitTimeout, MaxSubscriptions: cfg.MaxSubs,
			MaxPayload: cfg.MaxPayload, KeepAlive: cfg.KeepAlive, ConnectionTimeout: cfg.ConnTimeout,
			OnSlow: met.SlowConsumer, OnConn: met.Connected,
		}, policy, ops, h, log)
		met.Gauge("tokencast_websocket_connections", "Open WebSocket connections on this node.", func() float64 { return float64(ws.Conns()) })
		met.Gauge("tokencast_subscriptions", "Subscriptions attached on this node (WebSocket and SSE).", func() float64 { return float64(h.Subscribers()) })
		met.Gauge("tokencast_watched_sessions", "Sessions this node watches: one NATS interest each.", func() float64 { return float64(h.Sessions()) })
		sigv4, err := auth.ParseSigV4Keys(cfg.SigV4Keys, cfg.SigV4MaxSkew)
		if err != nil {
			return fmt.Errorf("TOKENCAST_SIGV4_KEYS: %w", err)
		}
		var verifier gateway.SignatureVerifier
		if sigv4.Len() > 0 {
			verifier = sigv4
		}
		events = sse.NewServer(sse.Config{
			QueueSize: cfg.QueueSize, WriteTimeout: cfg.WriteTimeout, MaxResultBytes: cfg.MaxResultBytes,
			OnStream: func(delta int) { met.Connected("sse", delta) },
		}, policy, ops, h, log)
		mux = gateway.New(gateway.Config{
			MaxBodyBytes: cfg.MaxBodyBytes, SigV4: verifier, UI: web.Dist(), Metrics: publicMetrics,
			LoopbackHostsOnly: dev, AllowedHosts: cfg.AllowedHosts,
		}, gateway.Deps{Policy: policy, GraphQL: ops, WebSocket: ws, SSE: events, Ready: ready, Version: version}).Handler()
	} else {
		mux = gateway.HealthHandler(ready, publicMetrics)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
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
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
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
	fmt.Fprintf(stdout, "tokencast %s listening on %s://%s (role %s, %s)\n", version, scheme, ln.Addr(), cfg.Role, mode)
	log.Info("serving", "addr", ln.Addr().String(), "tls", scheme == "https", "role", cfg.Role, "open", authn.Open(), "workers", cfg.Workers, "data_dir", cfg.DataDir)

	var internal *http.Server
	if cfg.InternalAddr != "" {
		iln, err := net.Listen("tcp", cfg.InternalAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on --internal-addr: %w", err)
		}
		internal = &http.Server{Handler: gateway.InternalHandler(met.Handler(), cfg.Pprof), ReadHeaderTimeout: 10 * time.Second}
		log.Info("internal listener", "addr", iln.Addr().String(), "pprof", cfg.Pprof)
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
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		stopPulling()
		var wg sync.WaitGroup
		if api {
			events.Shutdown()
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
		if cfg.DrainDelay > 0 {
			select {
			case <-time.After(cfg.DrainDelay):
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
	clients, err := auth.ParseKeys(cfg.APIKeys, auth.Client)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_API_KEYS: %w", err)
	}
	if err := clients.Add(strings.Join(file.APIKeys, ","), auth.Client); err != nil {
		return nil, fmt.Errorf("--config api_keys: %w", err)
	}
	if err := clients.AddPublic(cfg.PublicKeys); err != nil {
		return nil, fmt.Errorf("TOKENCAST_PUBLIC_KEYS: %w", err)
	}
	if err := clients.AddPublic(strings.Join(file.PublicKeys, ",")); err != nil {
		return nil, fmt.Errorf("--config public_keys: %w", err)
	}
	services, err := auth.ParseKeys(cfg.ServiceKeys, auth.Service)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_SERVICE_KEYS: %w", err)
	}
	if err := services.Add(strings.Join(file.ServiceKeys, ","), auth.Service); err != nil {
		return nil, fmt.Errorf("--config service_keys: %w", err)
	}
	var tokens auth.TokenVerifier
	if cfg.OIDCIssuer != "" {
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: cfg.OIDCIssuer, Audience: cfg.OIDCAudience, UserClaim: cfg.OIDCUserClaim, Skew: cfg.OIDCSkew})
		if err != nil {
			return nil, err
		}
		tokens = o
	}
	return auth.NewAuthenticator(clients, services, tokens), nil
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
