package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/bus"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/metrics"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/sse"
	"github.com/tokencast/tokencast/internal/stream"
	"github.com/tokencast/tokencast/internal/tools"
	"github.com/tokencast/tokencast/internal/wsproto"
)

// server is tokencast built from its configuration: the parts its role
// runs, wired together, ready to serve and to shut down.
type server struct {
	cfg     *config.Config
	version string
	log     *slog.Logger
	dev     bool
	authn   *auth.Authenticator
	bus     *bus.Bus
	met     *metrics.Metrics
	// stopping is set when shutdown starts: readiness turns false and new
	// asks and connections are refused.
	stopping atomic.Bool
	// ready are the checks behind /readyz.
	ready map[string]gateway.Readiness
	// orch is nil unless the role runs workers; hub, ws and events are nil
	// unless it serves the API.
	orch *orchestrator.Orchestrator
	// tools runs the tools agent models call, through registry; nil
	// unless the role runs workers.
	tools    orchestrator.Toolbox
	registry *tools.Registry
	hub      *hub.Hub
	ws       *wsproto.Server
	events   *sse.Server
	// answers are the UI toolkits' answer streams (aisdk, agui).
	answers []*stream.Answers
	handler http.Handler
	// usage records and sums what provider calls cost, and holds them to
	// budgets (usage.go); refs are the models' references by name.
	usage *usage
	refs  map[string]string
}

// modelRef is the reference of a model by the name a client uses.
func (s *server) modelRef(name string) string {
	if ref, ok := s.refs[name]; ok {
		return ref
	}
	return name
}

// build opens the bus and builds the models and the parts the role runs.
// What it opened is closed again if it fails; otherwise close does that.
func build(ctx context.Context, cfg *config.Config, version string, opts Options, log *slog.Logger) (_ *server, err error) {
	s := &server{cfg: cfg, version: version, log: log, dev: cfg.Server.Dev()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	file, err := readConfigFile(cfg.Providers.ConfigFile, log)
	if err != nil {
		return nil, err
	}
	if s.authn, err = authenticator(ctx, cfg.Auth, file); err != nil {
		return nil, err
	}
	if err := s.refuseUnsafe(); err != nil {
		return nil, err
	}
	if s.bus, err = openBus(ctx, cfg.NATS, log); err != nil {
		return nil, err
	}
	var reg *tools.Registry
	if s.runsWorkers() {
		if reg, err = buildTools(ctx, file, cfg.Getenv, log); err != nil {
			return nil, fmt.Errorf("tools: %w", err)
		}
		s.registry, s.tools = reg, toolbox{reg}
	}
	policies, err := toolPolicies(file)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	models, modelNames, defaultModel, err := models(ctx, cfg.Providers, cfg.Getenv, file, opts, reg, policies)
	if err != nil {
		return nil, err
	}
	s.met = s.newMetrics(ctx)
	refs := make([]string, 0, len(models))
	s.refs = make(map[string]string, len(models))
	for name, m := range models {
		refs = append(refs, m.Ref)
		s.refs[name] = m.Ref
	}
	if err := s.buildUsage(ctx, file, refs); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	s.ready = s.readiness()
	if s.runsWorkers() {
		s.buildWorkers(models, defaultModel)
	}
	if !s.servesAPI() {
		s.handler = gateway.HealthHandler(s.ready, s.publicMetrics())
		return s, nil
	}
	if err := s.buildAPI(modelNames, defaultModel); err != nil {
		return nil, err
	}
	return s, nil
}

// close releases what build opened: the hub before the bus it reads.
func (s *server) close() {
	if s.hub != nil {
		s.hub.Close()
	}
	s.usage.close()
	if s.registry != nil {
		if err := s.registry.Close(); err != nil {
			s.log.Warn("close the tools' servers", "err", err)
		}
	}
	if s.bus != nil {
		s.bus.Close()
	}
}

// servesAPI reports whether the role serves GraphQL; runsWorkers whether
// it generates answers.
func (s *server) servesAPI() bool   { return s.cfg.Server.Role != "worker" }
func (s *server) runsWorkers() bool { return s.cfg.Server.Role != "api" }

// refuseUnsafe refuses to start where conversations would be open to
// anyone: development mode off loopback, production mode without
// authentication or with any origin, an embedded NATS listening in
// production mode without the operator's consent.
func (s *server) refuseUnsafe() error {
	cfg, dev, authn := s.cfg, s.dev, s.authn
	if s.servesAPI() {
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
		s.log.Warn("the embedded NATS listens without authentication (--nats-unauthenticated): firewall its ports", "nats_listen", cfg.NATS.Listen, "nats_cluster_listen", cfg.NATS.ClusterListen)
	}
	return nil
}

// openBus connects to NATS, or embeds it, and sets up its streams.
func openBus(ctx context.Context, n config.NATS, log *slog.Logger) (*bus.Bus, error) {
	return bus.Open(ctx, bus.Config{
		DataDir: n.DataDir, EventRetention: n.EventRetention, SessionTTL: n.SessionTTL, MaxDeliver: n.MaxDeliver, AckWait: n.AckWait,
		URLs: n.URL, CredsFile: n.Creds, NKeySeedFile: n.NKey, CAFile: n.CA,
		CertFile: n.Cert, KeyFile: n.Key,
		Listen: n.Listen, Replicas: n.Replicas,
		ClusterListen: n.ClusterListen, Routes: n.Routes, ClusterName: n.ClusterName, ServerName: n.ServerName,
	}, log)
}

// newMetrics makes the metrics, with the whole cluster's queue as gauges.
func (s *server) newMetrics(ctx context.Context) *metrics.Metrics {
	b := s.bus
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
	return met
}

// publicMetrics is /metrics on the public port, unless an internal
// listener takes it.
func (s *server) publicMetrics() http.Handler {
	if s.cfg.Server.InternalAddr != "" {
		return nil
	}
	return s.met.Handler()
}

// readiness is the checks behind /readyz that every role has.
func (s *server) readiness() map[string]gateway.Readiness {
	return map[string]gateway.Readiness{
		"nats":    s.bus.Ready,
		"storage": s.bus.Writable,
		"serving": func(context.Context) error {
			if s.stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
	}
}

// buildWorkers makes the orchestrator, which takes requests off the queue
// and generates their answers, and adds its readiness check.
func (s *server) buildWorkers(models map[string]orchestrator.Model, defaultModel string) {
	cfg, b, met, log, ready := s.cfg, s.bus, s.met, s.log, s.ready
	orch := orchestrator.New(orchestrator.Config{
		Workers:      cfg.Worker.Count,
		Coalescing:   orchestrator.Coalescing{Window: cfg.Worker.Coalesce.Window, Bytes: cfg.Worker.Coalesce.Bytes, Chunks: cfg.Worker.Coalesce.Chunks},
		DefaultModel: defaultModel,
		Heartbeat:    cfg.NATS.AckWait / 3,
		Policy: orchestrator.Policy{
			FirstToken: cfg.Worker.FirstTokenTimeout, Idle: cfg.Worker.IdleTimeout, Retries: cfg.Worker.ProviderRetries, Budget: cfg.Worker.RetryBudget,
		},
		Recorder: met,
		Usage:    s.usage,
		Budgets:  s.usage,
		Tools:    s.tools,
		Agent: orchestrator.Agent{
			MaxSteps: cfg.Worker.Agent.MaxSteps, ToolTimeout: cfg.Worker.Agent.ToolTimeout, RunTimeout: cfg.Worker.Agent.RunTimeout,
			MaxToolOutput: cfg.Worker.Agent.MaxToolOutput, ApprovalTimeout: cfg.Worker.Agent.ApprovalTimeout, MaxParallelTools: cfg.Worker.Agent.ParallelTools,
		},
	}, b, models, log)
	ready["workers"] = func(context.Context) error {
		if !orch.Pulling() {
			return errors.New("workers are not taking requests")
		}
		return nil
	}
	s.orch = orch
}
