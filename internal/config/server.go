package config

import (
	"flag"
	"net"
	"time"
)

// Server is the process's part in a deployment and its HTTP listeners: what
// it runs, where it listens, the HTTP surface's timeouts, and how it stops.
type Server struct {
	Addr string
	// Mode is dev, prod or auto (see Dev).
	Mode string
	// Role is all, api or worker.
	Role    string
	TLSCert string
	TLSKey  string
	// HTTP server timeouts (a stream extends its write deadline per frame).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxBodyBytes                                              int64
	AllowedOrigins                                            []string
	AllowedHosts                                              []string
	TrustedProxies                                            string
	// InternalAddr serves /metrics and, with Pprof, the profiles apart
	// from the public port.
	InternalAddr    string
	Pprof           bool
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
}

func (s *Server) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.Addr, "addr", "127.0.0.1:8080", "address to listen on (host:port)")
	fs.DurationVar(&s.ReadHeaderTimeout, "http-read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	fs.DurationVar(&s.ReadTimeout, "http-read-timeout", 30*time.Second, "how long a client may take to send a whole request")
	fs.DurationVar(&s.WriteTimeout, "http-write-timeout", 30*time.Second, "how long writing a response may take (an SSE stream gets --write-timeout per frame instead)")
	fs.DurationVar(&s.IdleTimeout, "http-idle-timeout", 120*time.Second, "how long a kept-alive HTTP connection may wait for its next request")
	fs.Int64Var(&s.MaxBodyBytes, "max-body-bytes", 1<<20, "largest HTTP request body, in bytes")
	fs.Var((*commaList)(&s.AllowedHosts), "allowed-hosts", "development mode: comma-separated Host names accepted besides localhost, 127.0.0.1 and [::1] (any other is refused, against DNS rebinding)")
	fs.Var((*commaList)(&s.AllowedOrigins), "allowed-origins", "comma-separated browser origins allowed besides the server's own: WebSocket Origin check and CORS (\"*\" allows any)")
	fs.StringVar(&s.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of the proxies in front of this server whose X-Forwarded-For / Forwarded say which client they forward for (a public key's limits count per client address); a header from any other peer is ignored")
	fs.StringVar(&s.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS and wss:// on --addr (needs --tls-key)")
	fs.StringVar(&s.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.DurationVar(&s.DrainDelay, "drain-delay", 0, "after SIGTERM, keep the port open this long with /readyz failing (and new asks and connections refused) so a load balancer stops sending traffic first; counts in --shutdown-timeout")
	fs.StringVar(&s.Mode, "mode", "auto", "dev (open, loopback only, introspection on), prod (authentication required), or auto: dev on a loopback address, prod otherwise")
	fs.StringVar(&s.InternalAddr, "internal-addr", "", "a separate listener (host:port) for /metrics and, with --pprof, /debug/pprof; empty serves /metrics on --addr")
	fs.BoolVar(&s.Pprof, "pprof", false, "serve Go's profiles under /debug/pprof on --internal-addr")
	fs.StringVar(&s.Role, "role", "all", "all (API and workers), api (GraphQL only), or worker (answers only; serves just /healthz and /readyz)")
}

// Dev reports whether the server runs in development mode.
func (s Server) Dev() bool {
	return s.Mode == "dev" || (s.Mode == "auto" && Loopback(s.Addr))
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

// Log is how the server logs.
type Log struct {
	// Level is debug, info, warn or error; Format text or json.
	Level  string
	Format string
}

func (l *Log) flags(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", "text", "text or json")
}
