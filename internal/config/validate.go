package config

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// validate names every setting that is out of range or missing its
// partner, each by its flag. The checks cross components (the session TTL
// against the event retention, the drain delay against the shutdown
// timeout), so they live together here, in the order their errors print.
func (c *Config) validate() error {
	s, a, l, st, n, w, p := c.Server, c.Auth, c.Limits, c.Streams, c.NATS, c.Worker, c.Providers
	var errs []error
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", s.Addr, err))
	}
	errs = append(errs, c.positive()...)
	if l.SessionRate < 0 || l.SessionBurst < 1 || n.SessionTTL < 0 || (n.SessionTTL > 0 && n.SessionTTL < time.Second) {
		errs = append(errs, errors.New("--session-rate must not be negative, --session-burst at least 1, --session-ttl 0 or at least 1s"))
	}
	if n.SessionTTL > 0 && n.SessionTTL < n.EventRetention {
		errs = append(errs, errors.New("--session-ttl must not be shorter than --event-retention: a session's events must not outlive it"))
	}
	if st.LateJoinWindow < 0 || st.LateJoinGrace <= 0 {
		errs = append(errs, errors.New("--late-join-window must not be negative, --late-join-grace must be positive"))
	}
	if w.Coalesce.Window < 0 || w.Coalesce.Bytes < 0 || w.Coalesce.Chunks < 0 || p.Demo.TTFT < 0 || p.Demo.TokenInterval < 0 {
		errs = append(errs, errors.New("coalescing and demo settings must not be negative"))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.Log.Level))
	}
	if s.Pprof && s.InternalAddr == "" {
		errs = append(errs, errors.New("--pprof needs --internal-addr: profiles are never served on the public port"))
	}
	switch s.Role {
	case "all", "api", "worker":
	default:
		errs = append(errs, fmt.Errorf("--role %q: want all, api or worker", s.Role))
	}
	errs = append(errs, n.validate()...)
	switch s.Mode {
	case "auto", "dev", "prod":
	default:
		errs = append(errs, fmt.Errorf("--mode %q: want auto, dev or prod", s.Mode))
	}
	if (a.OIDC.Issuer == "") != (a.OIDC.Audience == "") {
		errs = append(errs, errors.New("--oidc-issuer and --oidc-audience go together"))
	}
	if w.FirstTokenTimeout <= 0 || w.IdleTimeout <= 0 || w.ProviderRetries < 0 || w.RetryBudget < 0 {
		errs = append(errs, errors.New("--first-token-timeout and --idle-timeout must be positive, --provider-retries not negative"))
	}
	if l.AskRate < 0 || l.AskBurst < 1 || a.OIDC.Skew < 0 || a.TokenGrace < 0 {
		errs = append(errs, errors.New("--ask-rate, --oidc-skew and --token-grace must not be negative, --ask-burst at least 1"))
	}
	if s.DrainDelay < 0 || s.DrainDelay >= s.ShutdownTimeout {
		errs = append(errs, errors.New("--drain-delay must not be negative and must be shorter than --shutdown-timeout"))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// positive names each setting that must be above zero and is not.
func (c *Config) positive() []error {
	s, l, st, d, n, a := c.Server, c.Limits, c.Streams, c.Dialects, c.NATS, c.Auth
	positive := map[string]int64{
		"--workers": int64(c.Worker.Count), "--max-message-bytes": int64(l.MaxMessageBytes),
		"--max-deliver": int64(n.MaxDeliver), "--ws-read-limit": st.WSReadLimit,
		"--queue-size": int64(st.QueueSize), "--queue-bytes": int64(st.QueueBytes), "--max-result-bytes": int64(st.MaxResultBytes), "--max-subscriptions": int64(st.MaxSubscriptions),
		"--max-body-bytes": s.MaxBodyBytes, "--appsync-max-payload": int64(d.AppSync.MaxPayload),
		"--ws-keepalive": int64(d.KeepAlive), "--appsync-connection-timeout": int64(d.AppSync.ConnectionTimeout),
		"--sigv4-max-skew": int64(a.SigV4MaxSkew),
		"--write-timeout":  int64(st.WriteTimeout), "--init-timeout": int64(st.InitTimeout),
		"--http-read-header-timeout": int64(s.ReadHeaderTimeout), "--http-read-timeout": int64(s.ReadTimeout),
		"--http-write-timeout": int64(s.WriteTimeout), "--http-idle-timeout": int64(s.IdleTimeout),
		"--event-retention": int64(n.EventRetention), "--shutdown-timeout": int64(s.ShutdownTimeout),
		"--max-conns": int64(l.MaxConns), "--max-conns-per-principal": int64(l.MaxConnsPerPrincipal),
		"--max-pending-conns": int64(l.MaxPendingConns), "--max-pending-conns-per-addr": int64(l.MaxPendingPerAddr),
		"--max-depth": int64(l.MaxDepth), "--max-aliases": int64(l.MaxAliases), "--max-complexity": int64(l.MaxComplexity), "--max-fields": int64(l.MaxFields),
		"--operation-timeout": int64(l.OperationTimeout),
		"--agent-max-steps":   int64(c.Worker.Agent.MaxSteps), "--agent-tool-timeout": int64(c.Worker.Agent.ToolTimeout),
		"--agent-run-timeout": int64(c.Worker.Agent.RunTimeout), "--agent-max-tool-output": int64(c.Worker.Agent.MaxToolOutput),
		"--agent-approval-timeout": int64(c.Worker.Agent.ApprovalTimeout), "--agent-parallel-tools": int64(c.Worker.Agent.ParallelTools),
	}
	var errs []error
	for name, v := range positive {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	return errs
}
