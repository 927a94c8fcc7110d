package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokencast/tokencast/internal/agui"
	"github.com/tokencast/tokencast/internal/aisdk"
	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/events"
	"github.com/tokencast/tokencast/internal/gateway"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/ratelimit"
	"github.com/tokencast/tokencast/internal/sse"
	"github.com/tokencast/tokencast/internal/stream"
	"github.com/tokencast/tokencast/internal/wsproto"
	"github.com/tokencast/tokencast/web"
)

// buildAPI makes the parts that serve GraphQL: the hub that fans answers
// out to subscribers, the schema and its limits, the WebSocket server and
// the gateway in front of them all.
func (s *server) buildAPI(modelNames []string, defaultModel string) error {
	cfg, b, met, log, authn, ready, version, dev := s.cfg, s.bus, s.met, s.log, s.authn, s.ready, s.version, s.dev
	stopping, publicMetrics := &s.stopping, s.publicMetrics()
	proxies, err := auth.ParseProxies(cfg.Server.TrustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	refusals := ratelimit.NewRefusals(log)
	h := hub.New(b, log, hub.Config{MaxPending: cfg.Streams.QueueSize * 4, LateJoinWindow: cfg.Streams.LateJoinWindow, LateJoinGrace: cfg.Streams.LateJoinGrace})
	s.hub = h
	guard := auth.NewGuard(b, ratelimit.New(cfg.Limits.SessionRate, cfg.Limits.SessionBurst), log)
	resolver := &graph.Resolver{
		Store: b, MaxMessageBytes: cfg.Limits.MaxMessageBytes, Log: log,
		ModelNames: modelNames, DefaultModel: defaultModel,
		Sessions: guard, Asks: ratelimit.New(cfg.Limits.AskRate, cfg.Limits.AskBurst), Refusals: refusals,
		Accepting: func() bool { return !stopping.Load() },
		Asked:     met.Asked,
		Usage:     s.usage,
		Budgets:   s.usage,
		ModelRef:  s.modelRef,
	}
	es := graph.NewExecutableSchema(graph.Config{Resolvers: resolver})
	limits := graph.Limits{MaxDepth: cfg.Limits.MaxDepth, MaxAliases: cfg.Limits.MaxAliases, MaxComplexity: cfg.Limits.MaxComplexity, MaxFields: cfg.Limits.MaxFields, Introspection: dev, Suggestions: dev,
		OperationTimeout: cfg.Limits.OperationTimeout}
	ops := graph.NewOperations(es, limits, guard, log)
	// One set of connection caps for WebSocket and SSE alike.
	conns := ratelimit.NewConns(cfg.Limits.MaxConns, cfg.Limits.MaxConnsPerPrincipal).WithPending(cfg.Limits.MaxPendingConns, cfg.Limits.MaxPendingPerAddr)
	policy := stream.NewPolicy(stream.Config{
		Conns: conns, AllowedOrigins: cfg.Server.AllowedOrigins, TokenGrace: cfg.Auth.TokenGrace, Proxies: proxies, Refusals: refusals,
	}, authn, log)
	sigv4, err := auth.ParseSigV4Keys(cfg.Auth.SigV4Keys, cfg.Auth.SigV4MaxSkew)
	if err != nil {
		return fmt.Errorf("TOKENCAST_SIGV4_KEYS: %w", err)
	}
	// Signatures are refused (nil verifiers) when no access keys are set.
	var verifier gateway.SignatureVerifier
	var wsVerifier wsproto.SignatureVerifier
	if sigv4.Len() > 0 {
		verifier, wsVerifier = sigv4, sigv4
	}
	ws := wsproto.NewServer(wsproto.Config{
		ReadLimit: cfg.Streams.WSReadLimit, WriteTimeout: cfg.Streams.WriteTimeout, QueueSize: cfg.Streams.QueueSize,
		QueueBytes: cfg.Streams.QueueBytes, MaxResultBytes: cfg.Streams.MaxResultBytes,
		InitTimeout: cfg.Streams.InitTimeout, MaxSubscriptions: cfg.Streams.MaxSubscriptions,
		MaxPayload: cfg.Dialects.AppSync.MaxPayload, KeepAlive: cfg.Dialects.KeepAlive, ConnectionTimeout: cfg.Dialects.AppSync.ConnectionTimeout,
		OnSlow: met.SlowConsumer, OnConn: met.Connected,
		Publish: resolver, SigV4: wsVerifier,
	}, policy, ops, h, log)
	met.Gauge("tokencast_websocket_connections", "Open WebSocket connections on this node.", func() float64 { return float64(ws.Conns()) })
	met.Gauge("tokencast_subscriptions", "Subscriptions attached on this node (WebSocket and SSE).", func() float64 { return float64(h.Subscribers()) })
	met.Gauge("tokencast_watched_sessions", "Sessions this node watches: one NATS interest each.", func() float64 { return float64(h.Sessions()) })
	sseServer := sse.NewServer(sse.Config{
		QueueSize: cfg.Streams.QueueSize, WriteTimeout: cfg.Streams.WriteTimeout, MaxResultBytes: cfg.Streams.MaxResultBytes,
		OnStream: func(delta int) { met.Connected("sse", delta) },
	}, policy, ops, h, log)
	// The UI toolkits' protocols ask, own and cancel through the resolvers.
	answers := func(protocol string) *stream.Answers {
		a := stream.NewAnswers(stream.AnswersConfig{
			QueueSize: cfg.Streams.QueueSize, WriteTimeout: cfg.Streams.WriteTimeout,
			OnStream: func(delta int) { met.Connected(protocol, delta) },
		}, policy, h)
		s.answers = append(s.answers, a)
		return a
	}
	uichat := aisdk.NewServer(answers("aisdk"), resolver, cfg.Limits.OperationTimeout, log)
	agents := agui.NewServer(answers("agui"), resolver, cfg.Limits.OperationTimeout, log)
	s.ws, s.events = ws, sseServer
	s.handler = gateway.New(gateway.Config{
		MaxBodyBytes: cfg.Server.MaxBodyBytes, SigV4: verifier, UI: web.Dist(), Metrics: publicMetrics,
		LoopbackHostsOnly: dev, AllowedHosts: cfg.Server.AllowedHosts,
	}, gateway.Deps{Policy: policy, GraphQL: ops, WebSocket: ws, SSE: sseServer, AISDK: uichat, AGUI: agents, Events: events.NewHandler(resolver, log), Ready: ready, Version: version}).Handler()
	return nil
}

// authenticator reads the client and service keys (the environment's and
// the --config file's) and the OIDC issuer, if one is set.
func authenticator(ctx context.Context, a config.Auth, file modelFile) (*auth.Authenticator, error) {
	clients, err := auth.ParseKeys(a.APIKeys, auth.Client)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_API_KEYS: %w", err)
	}
	if err := clients.Add(strings.Join(file.APIKeys, ","), auth.Client); err != nil {
		return nil, fmt.Errorf("--config api_keys: %w", err)
	}
	if err := clients.AddPublic(a.PublicKeys); err != nil {
		return nil, fmt.Errorf("TOKENCAST_PUBLIC_KEYS: %w", err)
	}
	if err := clients.AddPublic(strings.Join(file.PublicKeys, ",")); err != nil {
		return nil, fmt.Errorf("--config public_keys: %w", err)
	}
	services, err := auth.ParseKeys(a.ServiceKeys, auth.Service)
	if err != nil {
		return nil, fmt.Errorf("TOKENCAST_SERVICE_KEYS: %w", err)
	}
	if err := services.Add(strings.Join(file.ServiceKeys, ","), auth.Service); err != nil {
		return nil, fmt.Errorf("--config service_keys: %w", err)
	}
	var tokens auth.TokenVerifier
	if a.OIDC.Issuer != "" {
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: a.OIDC.Issuer, Audience: a.OIDC.Audience, UserClaim: a.OIDC.UserClaim, Skew: a.OIDC.Skew})
		if err != nil {
			return nil, err
		}
		tokens = o
	}
	return auth.NewAuthenticator(clients, services, tokens), nil
}
