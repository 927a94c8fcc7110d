// Package config reads tokencast's settings: flags first, then TOKENCAST_*
// environment variables, then defaults that run out of the box.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Config is every setting of `tokencast serve`.
type Config struct {
	Addr            string
	DataDir         string
	Workers         int
	MaxMessageBytes int
	CoalesceWindow  time.Duration
	CoalesceBytes   int
	CoalesceChunks  int
	DemoTTFT        time.Duration
	DemoTokenGap    time.Duration
	DemoRepeat      int
	EventRetention  time.Duration
	LateJoinWindow  time.Duration
	LateJoinGrace   time.Duration
	MaxDeliver      int
	WSReadLimit     int64
	WriteTimeout    time.Duration
	// HTTP server timeouts (a stream extends its write deadline per frame).
	HTTPReadHeaderTimeout, HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration
	QueueSize                                                                 int
	QueueBytes                                                                int
	MaxResultBytes                                                            int
	InitTimeout                                                               time.Duration
	MaxSubs                                                                   int
	MaxPayload                                                                int
	KeepAlive                                                                 time.Duration
	ConnTimeout                                                               time.Duration
	MaxBodyBytes                                                              int64
	TLSCert                                                                   string
	TLSKey                                                                    string
	SigV4MaxSkew                                                              time.Duration
	AllowedOrigins                                                            []string
	TrustedProxies                                                            string
	AllowedHosts                                                              []string
	ShutdownTimeout                                                           time.Duration
	DrainDelay                                                                time.Duration
	LogLevel                                                                  string
	LogFormat                                                                 string
	Mode                                                                      string

	OIDCIssuer    string
	OIDCAudience  string
	OIDCUserClaim string
	OIDCSkew      time.Duration
	TokenGrace    time.Duration

	AskRate              float64
	AskBurst             int
	SessionRate          float64
	SessionBurst         int
	SessionTTL           time.Duration
	MaxConns             int
	MaxConnsPerPrincipal int
	MaxPendingConns      int
	MaxPendingPerAddr    int
	MaxDepth             int
	MaxAliases           int
	MaxComplexity        int
	MaxFields            int
	OperationTimeout     time.Duration

	InternalAddr string
	Pprof        bool

	Role       string
	NATSURL    string
	NATSCreds  string
	NATSNKey   string
	NATSCA     string
	NATSCert   string
	NATSKey    string
	NATSListen string
	// NATSUnauthenticated allows, in production mode, the embedded NATS to
	// listen on --nats-listen or --nats-cluster-listen without
	// authentication.
	NATSUnauthenticated bool
	// The embedded NATS joins a cluster of its peers when these are set.
	NATSClusterListen string
	NATSRoutes        string
	NATSClusterName   string
	NATSServerName    string
	Replicas          int
	AckWait           time.Duration

	Model             string
	ConfigFile        string
	SystemPrompt      string
	FirstTokenTimeout time.Duration
	IdleTimeout       time.Duration
	ProviderRetries   int
	RetryBudget       time.Duration

	// Getenv reads the environment the server was started with: providers
	// take their settings from the variables their users already set.
	Getenv func(string) string

	// Secrets come from the environment only, so they never show in ps.
	APIKeys     string
	PublicKeys  string
	ServiceKeys string
	SigV4Keys   string
}

// EnvName is the environment variable that sets a flag.
func EnvName(flagName string) string {
	return "TOKENCAST_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse reads args (after the subcommand) and the environment. It returns
// flag.ErrHelp, having printed usage to out, when help was asked for.
func Parse(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("tokencast serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "address to listen on (host:port)")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for the embedded NATS JetStream store (conversations, requests, events)")
	fs.IntVar(&c.Workers, "workers", 8, "answers generated at once by this process")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 32<<10, "largest question accepted, in bytes")
	fs.DurationVar(&c.CoalesceWindow, "coalesce-window", 50*time.Millisecond, "after the first delta, flush buffered deltas at least this often (0 sends every chunk)")
	fs.IntVar(&c.CoalesceBytes, "coalesce-bytes", 512, "flush buffered deltas once they reach this many bytes (0: no size limit)")
	fs.IntVar(&c.CoalesceChunks, "coalesce-chunks", 0, "flush buffered deltas every N provider chunks (6 is the AWS sample; 0: off)")
	fs.DurationVar(&c.DemoTTFT, "demo-ttft", 300*time.Millisecond, "demo model: delay before the first token")
	fs.DurationVar(&c.DemoTokenGap, "demo-token-interval", 40*time.Millisecond, "demo model: delay between tokens")
	fs.IntVar(&c.DemoRepeat, "demo-repeat", 1, "demo model: repeat each answer this many times (for load tests)")
	fs.DurationVar(&c.EventRetention, "event-retention", 24*time.Hour, "how long a session's events stay replayable for late joiners")
	fs.DurationVar(&c.LateJoinWindow, "late-join-window", 10*time.Second, "a subscription without a cursor is replayed the session's latest answer if it ended less than this long ago (a client that asks before its subscription is live loses nothing; 0: only answers in flight)")
	fs.DurationVar(&c.LateJoinGrace, "late-join-grace", 2*time.Second, "such a replay waits this long for the subscriber's own question first: a client that subscribes, then asks a follow-up, gets the new answer, not the previous one again")
	fs.IntVar(&c.MaxDeliver, "max-deliver", 5, "how often one request may be handed to a worker")
	fs.Int64Var(&c.WSReadLimit, "ws-read-limit", 256<<10, "largest WebSocket message accepted from a client, in bytes")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "deadline for writing one frame to a client")
	fs.DurationVar(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", 30*time.Second, "how long a client may take to send a whole request")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", 30*time.Second, "how long writing a response may take (an SSE stream gets --write-timeout per frame instead)")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 120*time.Second, "how long a kept-alive HTTP connection may wait for its next request")
	fs.IntVar(&c.QueueSize, "queue-size", 256, "frames queued per connection before a slow client is closed")
	fs.IntVar(&c.QueueBytes, "queue-bytes", 1<<20, "bytes queued per WebSocket connection before a slow client is closed (1013; it resumes from its cursor)")
	fs.IntVar(&c.MaxResultBytes, "max-result-bytes", 5<<20, "largest query result sent over a WebSocket or SSE, in bytes (RESULT_TOO_LARGE beyond)")
	fs.DurationVar(&c.InitTimeout, "init-timeout", 3*time.Second, "time a WebSocket client has to send connection_init")
	fs.IntVar(&c.MaxSubs, "max-subscriptions", 100, "subscriptions per WebSocket connection")
	fs.IntVar(&c.MaxPayload, "appsync-max-payload", 240<<10, "AppSync dialect: largest subscription payload (start message or event), in bytes")
	fs.DurationVar(&c.KeepAlive, "ws-keepalive", 20*time.Second, "graphql-ws (AppSync, legacy Apollo): how often a \"ka\" keep-alive is sent")
	fs.DurationVar(&c.ConnTimeout, "appsync-connection-timeout", 5*time.Minute, "AppSync dialect: connectionTimeoutMs announced in connection_ack (clients reconnect after this long without a ka)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest HTTP request body, in bytes")
	hosts := fs.String("allowed-hosts", "", "development mode: comma-separated Host names accepted besides localhost, 127.0.0.1 and [::1] (any other is refused, against DNS rebinding)")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins allowed besides the server's own: WebSocket Origin check and CORS (\"*\" allows any)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of the proxies in front of this server whose X-Forwarded-For / Forwarded say which client they forward for (a public key's limits count per client address); a header from any other peer is ignored")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS and wss:// on --addr (needs --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.DurationVar(&c.SigV4MaxSkew, "sigv4-max-skew", 5*time.Minute, "SigV4-signed requests: largest accepted difference between X-Amz-Date and server time")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "after SIGTERM, keep the port open this long with /readyz failing (and new asks and connections refused) so a load balancer stops sending traffic first; counts in --shutdown-timeout")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.Mode, "mode", "auto", "dev (open, loopback only, introspection on), prod (authentication required), or auto: dev on a loopback address, prod otherwise")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", "", "issuer URL whose JWT bearer tokens are accepted (discovery and JWKS from it)")
	fs.StringVar(&c.OIDCAudience, "oidc-audience", "", "audience (aud) a bearer token must carry")
	fs.StringVar(&c.OIDCUserClaim, "oidc-user-claim", "sub", "token claim that names the user who owns sessions")
	fs.DurationVar(&c.OIDCSkew, "oidc-skew", 30*time.Second, "clock skew tolerated on a token's exp and nbf")
	fs.DurationVar(&c.TokenGrace, "token-grace", 10*time.Second, "how long a WebSocket outlives its token's expiry before it is closed")
	fs.Float64Var(&c.AskRate, "ask-rate", 30, "questions per minute per principal (0: unlimited)")
	fs.IntVar(&c.AskBurst, "ask-burst", 10, "questions a principal may ask at once before the rate applies")
	fs.Float64Var(&c.SessionRate, "session-rate", 30, "new sessions per minute per principal (createSession, or a first ask, subscription or conversation read of an unknown id); 0: unlimited")
	fs.IntVar(&c.SessionBurst, "session-burst", 20, "new sessions a principal may start at once before --session-rate applies")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 30*24*time.Hour, "a conversation's turns are kept this long, and a session unused for twice as long is free again, with nothing of it left (0: forever)")
	fs.IntVar(&c.MaxConns, "max-conns", 10000, "streaming connections (WebSocket and SSE subscriptions) this node accepts")
	fs.IntVar(&c.MaxConnsPerPrincipal, "max-conns-per-principal", 1000, "streaming connections (WebSocket and SSE subscriptions) one principal may hold on this node")
	fs.IntVar(&c.MaxPendingConns, "max-pending-conns", 1000, "WebSocket connections not yet authenticated (before connection_init) this node holds; they do not count in --max-conns")
	fs.IntVar(&c.MaxPendingPerAddr, "max-pending-conns-per-addr", 32, "WebSocket connections not yet authenticated one client address may hold on this node")
	fs.IntVar(&c.MaxDepth, "max-depth", 10, "deepest selection nesting a GraphQL operation may use")
	fs.IntVar(&c.MaxAliases, "max-aliases", 30, "aliases a GraphQL operation may use")
	fs.IntVar(&c.MaxComplexity, "max-complexity", 200, "GraphQL complexity (fields selected) an operation may reach")
	fs.DurationVar(&c.OperationTimeout, "operation-timeout", 30*time.Second, "how long a GraphQL query or mutation may run before it ends with OPERATION_TIMEOUT (subscriptions are not bounded); also long enough for an ask to ride out a NATS leader election")
	fs.IntVar(&c.MaxFields, "max-fields", 500, "fields a GraphQL document may write, and an operation select with its fragments expanded (checked before validation)")
	fs.StringVar(&c.Model, "model", "", `default model, a name from --config or a reference "provider:model-id" (bedrock:…, openai:…, azure:…, anthropic:…, ollama:…, demo:default); default: the config file's default_model, else demo:default`)
	fs.StringVar(&c.ConfigFile, "config", "", "YAML file declaring named models (ref, max_tokens, temperature, system_prompt, fallbacks); see docs/providers.md")
	fs.StringVar(&c.SystemPrompt, "system-prompt", "Answer in {{.Language}} (the user's locale is {{.Locale}}).", "system prompt template for models without their own; {{.Locale}} and {{.Language}} name the user's locale")
	fs.DurationVar(&c.FirstTokenTimeout, "first-token-timeout", time.Minute, "a model that has not produced its first token after this long is given up (then retried or its fallback tried)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 30*time.Second, "a model silent for this long mid-answer ends the answer with PROVIDER_TIMEOUT")
	fs.IntVar(&c.ProviderRetries, "provider-retries", 2, "extra attempts per model when it is throttled or unavailable before its first token")
	fs.DurationVar(&c.RetryBudget, "retry-budget", 30*time.Second, "most time one answer may spend waiting between provider attempts (backoff and Retry-After)")
	fs.StringVar(&c.InternalAddr, "internal-addr", "", "a separate listener (host:port) for /metrics and, with --pprof, /debug/pprof; empty serves /metrics on --addr")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go's profiles under /debug/pprof on --internal-addr")
	fs.StringVar(&c.Role, "role", "all", "all (API and workers), api (GraphQL only), or worker (answers only; serves just /healthz and /readyz)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "comma-separated URLs of an external NATS cluster; empty embeds NATS in this process")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "credentials file for the external NATS")
	fs.StringVar(&c.NATSNKey, "nats-nkey", "", "NKey seed file for the external NATS")
	fs.StringVar(&c.NATSCA, "nats-ca", "", "CA certificate file to verify the external NATS's TLS")
	fs.StringVar(&c.NATSCert, "nats-cert", "", "PEM client certificate file for an external NATS that verifies clients (mutual TLS; needs --nats-key)")
	fs.StringVar(&c.NATSKey, "nats-key", "", "PEM private key file for --nats-cert")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "let other processes (workers) connect to the embedded NATS on host:port")
	fs.BoolVar(&c.NATSUnauthenticated, "nats-unauthenticated", false, "production mode: let the embedded NATS listen (--nats-listen, --nats-cluster-listen) although it has no authentication; anyone who reaches those ports reads and writes every conversation, so firewall them")
	fs.StringVar(&c.NATSClusterListen, "nats-cluster-listen", "", "embedded NATS: accept cluster routes from its peers on host:port (joins a JetStream cluster; needs --nats-routes)")
	fs.StringVar(&c.NATSRoutes, "nats-routes", "", "embedded NATS: comma-separated route URLs of the cluster's nodes (nats://host:port, its own may be listed)")
	fs.StringVar(&c.NATSClusterName, "nats-cluster-name", "tokencast", "embedded NATS: cluster name, the same on every node")
	fs.StringVar(&c.NATSServerName, "nats-server-name", "", "embedded NATS: this node's name, unique and stable across restarts (default: the host name)")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of every stream (3 in a cluster)")
	fs.DurationVar(&c.AckWait, "ack-wait", 30*time.Second, "a request whose worker shows no sign of life for this long is handed to another worker")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: tokencast [serve] [flags]\n\nServes the GraphQL API with embedded NATS and the demo model.\nEvery flag can also be set by the environment variable shown; a flag wins.\nOther commands: chat, bench, version (\"tokencast help\" lists them).\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (env %s, default %q)\n        %s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
		})
		fmt.Fprintf(out, "\nSecrets (environment only):\n"+
			"  TOKENCAST_API_KEYS      comma-separated client keys, each name:secret or secret (16+ chars);\n"+
			"                          clients send one as x-api-key. None set: open development mode, loopback only.\n"+
			"  TOKENCAST_PUBLIC_KEYS   client keys, as above, that are public by design (embedded in a browser app,\n"+
			"                          like an AppSync API key): their ask rate and connection caps count per client\n"+
			"                          address (see --trusted-proxies), not for the key as a whole.\n"+
			"  TOKENCAST_SERVICE_KEYS  comma-separated service keys, allowed to publish with sendMessage.\n"+
			"  TOKENCAST_SIGV4_KEYS    comma-separated ACCESS_KEY_ID:SECRET pairs; requests signed with one\n"+
			"                          (SigV4, service appsync) are services, as with a service key.\n")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.AllowedHosts = append(c.AllowedHosts, h)
		}
	}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	c.Getenv = getenv
	c.APIKeys = getenv("TOKENCAST_API_KEYS")
	c.PublicKeys = getenv("TOKENCAST_PUBLIC_KEYS")
	c.ServiceKeys = getenv("TOKENCAST_SERVICE_KEYS")
	c.SigV4Keys = getenv("TOKENCAST_SIGV4_KEYS")
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", c.Addr, err))
	}
	positive := map[string]int64{
		"--workers": int64(c.Workers), "--max-message-bytes": int64(c.MaxMessageBytes),
		"--max-deliver": int64(c.MaxDeliver), "--ws-read-limit": c.WSReadLimit,
		"--queue-size": int64(c.QueueSize), "--queue-bytes": int64(c.QueueBytes), "--max-result-bytes": int64(c.MaxResultBytes), "--max-subscriptions": int64(c.MaxSubs),
		"--max-body-bytes": c.MaxBodyBytes, "--appsync-max-payload": int64(c.MaxPayload),
		"--ws-keepalive": int64(c.KeepAlive), "--appsync-connection-timeout": int64(c.ConnTimeout),
		"--sigv4-max-skew": int64(c.SigV4MaxSkew),
		"--write-timeout":  int64(c.WriteTimeout), "--init-timeout": int64(c.InitTimeout),
		"--http-read-header-timeout": int64(c.HTTPReadHeaderTimeout), "--http-read-timeout": int64(c.HTTPReadTimeout),
		"--http-write-timeout": int64(c.HTTPWriteTimeout), "--http-idle-timeout": int64(c.HTTPIdleTimeout),
		"--event-retention": int64(c.EventRetention), "--shutdown-timeout": int64(c.ShutdownTimeout),
		"--max-conns": int64(c.MaxConns), "--max-conns-per-principal": int64(c.MaxConnsPerPrincipal),
		"--max-pending-conns": int64(c.MaxPendingConns), "--max-pending-conns-per-addr": int64(c.MaxPendingPerAddr),
		"--max-depth": int64(c.MaxDepth), "--max-aliases": int64(c.MaxAliases), "--max-complexity": int64(c.MaxComplexity), "--max-fields": int64(c.MaxFields),
		"--operation-timeout": int64(c.OperationTimeout),
	}
	for name, v := range positive {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.SessionRate < 0 || c.SessionBurst < 1 || c.SessionTTL < 0 || (c.SessionTTL > 0 && c.SessionTTL < time.Second) {
		errs = append(errs, errors.New("--session-rate must not be negative, --session-burst at least 1, --session-ttl 0 or at least 1s"))
	}
	if c.SessionTTL > 0 && c.SessionTTL < c.EventRetention {
		errs = append(errs, errors.New("--session-ttl must not be shorter than --event-retention: a session's events must not outlive it"))
	}
	if c.LateJoinWindow < 0 || c.LateJoinGrace <= 0 {
		errs = append(errs, errors.New("--late-join-window must not be negative, --late-join-grace must be positive"))
	}
	if c.CoalesceWindow < 0 || c.CoalesceBytes < 0 || c.CoalesceChunks < 0 || c.DemoTTFT < 0 || c.DemoTokenGap < 0 {
		errs = append(errs, errors.New("coalescing and demo settings must not be negative"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.Pprof && c.InternalAddr == "" {
		errs = append(errs, errors.New("--pprof needs --internal-addr: profiles are never served on the public port"))
	}
	switch c.Role {
	case "all", "api", "worker":
	default:
		errs = append(errs, fmt.Errorf("--role %q: want all, api or worker", c.Role))
	}
	if c.NATSURL != "" && (c.NATSListen != "" || c.NATSClusterListen != "" || c.NATSRoutes != "") {
		errs = append(errs, errors.New("--nats-url connects to an external NATS: --nats-listen, --nats-cluster-listen and --nats-routes are for the embedded one"))
	}
	errs = append(errs, c.validateNATSFiles()...)
	if (c.NATSClusterListen == "") != (c.NATSRoutes == "") {
		errs = append(errs, errors.New("--nats-cluster-listen and --nats-routes go together"))
	}
	if c.Replicas < 1 || c.AckWait < time.Second {
		errs = append(errs, errors.New("--replicas must be at least 1 and --ack-wait at least 1s"))
	}
	switch c.Mode {
	case "auto", "dev", "prod":
	default:
		errs = append(errs, fmt.Errorf("--mode %q: want auto, dev or prod", c.Mode))
	}
	if (c.OIDCIssuer == "") != (c.OIDCAudience == "") {
		errs = append(errs, errors.New("--oidc-issuer and --oidc-audience go together"))
	}
	if c.FirstTokenTimeout <= 0 || c.IdleTimeout <= 0 || c.ProviderRetries < 0 || c.RetryBudget < 0 {
		errs = append(errs, errors.New("--first-token-timeout and --idle-timeout must be positive, --provider-retries not negative"))
	}
	if c.AskRate < 0 || c.AskBurst < 1 || c.OIDCSkew < 0 || c.TokenGrace < 0 {
		errs = append(errs, errors.New("--ask-rate, --oidc-skew and --token-grace must not be negative, --ask-burst at least 1"))
	}
	if c.DrainDelay < 0 || c.DrainDelay >= c.ShutdownTimeout {
		errs = append(errs, errors.New("--drain-delay must not be negative and must be shorter than --shutdown-timeout"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// validateNATSFiles checks the files that authenticate to an external NATS
// at start, naming the flag, rather than at the first connection attempt.
func (c *Config) validateNATSFiles() []error {
	var errs []error
	if (c.NATSCert == "") != (c.NATSKey == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	files := []struct{ flag, path string }{
		{"--nats-creds", c.NATSCreds}, {"--nats-nkey", c.NATSNKey}, {"--nats-ca", c.NATSCA},
		{"--nats-cert", c.NATSCert}, {"--nats-key", c.NATSKey},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if c.NATSURL == "" {
			errs = append(errs, fmt.Errorf("%s is for an external NATS: it needs --nats-url", f.flag))
			continue
		}
		if err := readable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errs
}

// readable reports why path cannot be read as a file, if it cannot.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// Loopback reports whether addr listens only on this machine.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Dev reports whether the server runs in development mode.
func (c *Config) Dev() bool {
	return c.Mode == "dev" || (c.Mode == "auto" && Loopback(c.Addr))
}
