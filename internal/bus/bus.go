// Package bus owns NATS: the embedded server, the streams, their subjects and
// retention. Nothing outside this package names a stream or a subject. Each
// file owns one thing and opens with the streams, subjects and retention it
// owns: the connection (nats.go), the request queue (queue.go), the event log
// (events.go), live watches (watch.go; on a solo node, from the acks:
// local.go), attempts (attempts.go), session owners (sessions.go),
// conversations (turns.go), cancels (cancels.go), tool-call approvals
// (approvals.go), dead letters (dead.go), the store's health (storage.go),
// usage records and their rollups (usage.go), budget counters (budgets.go)
// and the compare-and-set JSON values both keep (kvjson.go).
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

// Config says where NATS lives and how long it keeps things.
type Config struct {
	// DataDir holds the embedded server's JetStream files.
	DataDir string
	// EventRetention is how long a session's events stay replayable.
	EventRetention time.Duration
	// SessionTTL is how long a conversation's turns are kept; a session's
	// owner record lives twice as long from its last use, so a session
	// unused that long is free again, with nothing of it left. 0 keeps
	// both forever.
	SessionTTL time.Duration
	// MaxDeliver bounds how often one request is handed to a worker.
	MaxDeliver int
	// AckWait is how long a worker may hold a request without a sign of life.
	AckWait time.Duration

	// URLs of an external NATS cluster (comma-separated); empty embeds one.
	URLs string
	// CredsFile, NKeySeedFile and CAFile authenticate to an external NATS;
	// CertFile and KeyFile (both or neither) are a client certificate for a
	// NATS that verifies its clients' TLS certificates.
	CredsFile    string
	NKeySeedFile string
	CAFile       string
	CertFile     string
	KeyFile      string
	// Listen makes the embedded server accept other processes (workers) on
	// host:port; empty keeps it in-process only.
	Listen string
	// Replicas of every stream (3 in a cluster).
	Replicas int

	// ClusterListen (host:port) and Routes (comma-separated nats:// URLs of
	// the peers) make the embedded server a node of a JetStream cluster.
	ClusterListen string
	Routes        string
	// ClusterName is shared by every node; ServerName is this node's own,
	// stable across restarts (the host name when empty).
	ClusterName string
	ServerName  string
}

// Bus is a connection to NATS JetStream with tokencast's streams in place.
type Bus struct {
	cfg       Config
	log       *slog.Logger
	srv       *server.Server // nil when NATS is external
	nc        *nats.Conn
	js        jetstream.JetStream
	events    jetstream.Stream
	turns     jetstream.Stream
	work      jetstream.Consumer
	requests  jetstream.Stream
	cancels   jetstream.KeyValue
	sessions  jetstream.KeyValue
	approvals jetstream.KeyValue
	attempts  jetstream.KeyValue
	health    jetstream.KeyValue
	probe     storageProbe
	// fault is set from a write that failed for lack of space until the
	// store takes writes again (see storageFault).
	fault atomic.Pointer[error]

	// Events are published through one goroutine (see publishEvents),
	// their acks come to ackSub, one subscription to ackPrefix + "*".
	toPublish chan *eventPublish
	ackPrefix string
	ackSub    *nats.Subscription
	lastID    uint64        // publishEvents' own
	room      chan struct{} // a token per event awaiting its ack
	// awaiting holds the published events waiting for their ack, by id.
	awaitMu  sync.Mutex
	awaiting map[uint64]*eventPublish

	// attemptWatches are WatchAttempts' callers by claim key, all fed by
	// claimSub, one subscription to every claim.
	attemptMu      sync.Mutex
	attemptWatches map[string]map[*attemptWatch]struct{}
	claimSub       *nats.Subscription

	watchMu sync.Mutex
	watches map[*watch]struct{}
	// solo: this process is the only client of an embedded NATS (no
	// listener, no cluster), so live events come from the acks (local.go):
	// local holds the watches by session (each slice replaced, never
	// changed in place), lastAcked the newest position acknowledged.
	solo      bool
	local     map[string][]*watch
	lastAcked uint64
	// keeperDone stops the watch keeper; keeperWG waits for it.
	keeperDone chan struct{}
	keeperWG   sync.WaitGroup

	// dialErr is why the latest attempt to reach an external NATS failed,
	// until one succeeds: nats.go keeps some of these reasons only for
	// its callbacks.
	dialErr atomic.Pointer[error]
}

// Open starts the embedded NATS server under cfg.DataDir, connects to it in
// process and makes sure the streams exist.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 24 * time.Hour
	}
	// SessionTTL 0 keeps sessions forever.
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	b := &Bus{cfg: cfg, log: log, watches: make(map[*watch]struct{}), local: make(map[string][]*watch), keeperDone: make(chan struct{}),
		toPublish: make(chan *eventPublish, publishQueue), awaiting: make(map[uint64]*eventPublish), room: make(chan struct{}, publishQueue),
		attemptWatches: make(map[string]map[*attemptWatch]struct{})}
	var err error
	if cfg.URLs != "" {
		b.nc, err = connectExternal(cfg, b.noteDialError)
	} else {
		b.srv, b.nc, err = embed(cfg, log)
		b.solo = cfg.Listen == "" && cfg.ClusterListen == "" && cfg.Routes == ""
	}
	if err != nil {
		return nil, err
	}
	if err := b.spaceLeft(); err != nil {
		log.Error("the store cannot write: nothing can be asked or answered until space is freed", "err", err)
	}
	if err := b.setupWhenReady(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.startPublisher(); err != nil {
		b.Close()
		return nil, err
	}
	reconnected := make(chan struct{}, 1)
	b.nc.SetReconnectHandler(func(*nats.Conn) {
		b.noteDialError(nil)
		select {
		case reconnected <- struct{}{}:
		default: // a catch-up is already due
		}
	})
	b.keeperWG.Go(func() { b.watchKeeper(reconnected, b.keeperDone) })
	b.keeperWG.Go(b.publishEvents)
	return b, nil
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() {
	close(b.keeperDone)
	b.keeperWG.Wait()
	if b.nc != nil {
		_ = b.nc.Drain()
		for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// Ready reports whether NATS is connected and the streams answer.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return errors.New("nats not connected")
	}
	for name, s := range map[string]jetstream.Stream{"requests": b.requests, "events": b.events, "turns": b.turns} {
		if _, err := s.Info(ctx); err != nil {
			return fmt.Errorf("%s stream: %w", name, err)
		}
	}
	if _, err := b.work.Info(ctx); err != nil {
		return fmt.Errorf("workers consumer: %w", err)
	}
	return nil
}

// publishRetryFor is how long an idempotent publish keeps trying: long
// enough to ride out a NATS node's death (reconnect, then a new stream leader
// elected), so an answer goes on instead of burning a delivery attempt.
const publishRetryFor = 20 * time.Second

// publishRetrying publishes with a message id, retrying failures until
// publishRetryFor has passed or ctx ends; the id makes a retry of a publish
// that did land a no-op.
func (b *Bus) publishRetrying(ctx context.Context, subject string, data []byte, msgID string) (ack *jetstream.PubAck, err error) {
	err = b.retrying(ctx, "publish "+subject, func() error {
		ack, err = b.js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
		return err
	})
	return ack, err
}

// retrying calls op until it succeeds, ctx ends, or publishRetryFor has
// passed: long enough to ride out a leader election in a cluster. Only
// operations that are safe to repeat may use it.
func (b *Bus) retrying(ctx context.Context, what string, op func() error) error {
	deadline := time.Now().Add(publishRetryFor)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := b.storageFault(op())
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || errors.Is(err, chat.ErrStorageFull) {
			return err
		}
		b.log.Debug("NATS operation failed; retrying", "op", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
