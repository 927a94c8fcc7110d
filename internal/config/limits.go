package config

import (
	"flag"
	"time"
)

// Limits bound what one principal or one operation may take: asks and new
// sessions per minute, streaming connections, the size and shape of a
// GraphQL operation and how long it may run.
type Limits struct {
	MaxMessageBytes int

	AskRate      float64
	AskBurst     int
	SessionRate  float64
	SessionBurst int

	MaxConns             int
	MaxConnsPerPrincipal int
	MaxPendingConns      int
	MaxPendingPerAddr    int

	MaxDepth         int
	MaxAliases       int
	MaxComplexity    int
	MaxFields        int
	OperationTimeout time.Duration
}

func (l *Limits) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxMessageBytes, "max-message-bytes", 32<<10, "largest question accepted, in bytes")
	fs.Float64Var(&l.AskRate, "ask-rate", 30, "questions per minute per principal (0: unlimited)")
	fs.IntVar(&l.AskBurst, "ask-burst", 10, "questions a principal may ask at once before the rate applies")
	fs.Float64Var(&l.SessionRate, "session-rate", 30, "new sessions per minute per principal (createSession, or a first ask, subscription or conversation read of an unknown id); 0: unlimited")
	fs.IntVar(&l.SessionBurst, "session-burst", 20, "new sessions a principal may start at once before --session-rate applies")
	fs.IntVar(&l.MaxConns, "max-conns", 10000, "streaming connections (WebSocket and SSE subscriptions) this node accepts")
	fs.IntVar(&l.MaxConnsPerPrincipal, "max-conns-per-principal", 1000, "streaming connections (WebSocket and SSE subscriptions) one principal may hold on this node")
	fs.IntVar(&l.MaxPendingConns, "max-pending-conns", 1000, "WebSocket connections not yet authenticated (before connection_init) this node holds; they do not count in --max-conns")
	fs.IntVar(&l.MaxPendingPerAddr, "max-pending-conns-per-addr", 32, "WebSocket connections not yet authenticated one client address may hold on this node")
	fs.IntVar(&l.MaxDepth, "max-depth", 10, "deepest selection nesting a GraphQL operation may use")
	fs.IntVar(&l.MaxAliases, "max-aliases", 30, "aliases a GraphQL operation may use")
	fs.IntVar(&l.MaxComplexity, "max-complexity", 200, "GraphQL complexity (fields selected) an operation may reach")
	fs.DurationVar(&l.OperationTimeout, "operation-timeout", 30*time.Second, "how long a GraphQL query or mutation, or what an AI SDK or AG-UI request does before it streams, may run before it ends with OPERATION_TIMEOUT (subscriptions and streams are not bounded); also long enough for an ask to ride out a NATS leader election")
	fs.IntVar(&l.MaxFields, "max-fields", 500, "fields a GraphQL document may write, and an operation select with its fragments expanded (checked before validation)")
}
