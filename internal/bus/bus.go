// Package bus owns NATS: the embedded server, the streams, their subjects and
// retention. Nothing outside this package names a stream or a subject.
package bus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokencast/tokencast/internal/chat"
)

// Stream names and subjects.
const (
	requestsStream = "TC_REQUESTS"
	requestsSubj   = "tc.req"
	workersName    = "workers"

	eventsStream = "TC_EVENTS"
	eventsPrefix = "tc.ev."
	// Stored events are republished here, with their stream sequence in
	// headers, for live delivery over plain subscriptions (no consumer).
	livePrefix = "tc.live."

	turnsStream = "TC_TURNS"
	turnsPrefix = "tc.turn."

	deadStream = "TC_DEAD"
	deadSubj   = "tc.dead"

	sessionBucket = "TC_SESSIONS"
	attemptBucket = "TC_ATTEMPTS"
	cancelBucket  = "TC_CANCELS"
	cancelPrefix  = "tc.cancel."
	cancelMarkTTL = 24 * time.Hour
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
	cfg      Config
	log      *slog.Logger
	srv      *server.Server // nil when NATS is external
	nc       *nats.Conn
	js       jetstream.JetStream
	events   jetstream.Stream
	turns    jetstream.Stream
	work     jetstream.Consumer
	requests jetstream.Stream
	cancels  jetstream.KeyValue
	sessions jetstream.KeyValue
	attempts jetstream.KeyValue
	health   jetstream.KeyValue
	probe    storageProbe
	// fault is set from a write that failed for lack of space until the
	// store takes writes again (see storageFault).
	fault atomic.Pointer[error]

	// Events are published through one goroutine (see publishEvents).
	eventJS   jetstream.JetStream
	toPublish chan *eventPublish
	// awaiting holds the published events waiting for their ack, by message.
	awaitMu  sync.Mutex
	awaiting map[*nats.Msg]*eventPublish

	// attemptWatches are WatchAttempts' callers by claim key, all fed by
	// claimSub, one subscription to every claim.
	attemptMu      sync.Mutex
	attemptWatches map[string]map[*attemptWatch]struct{}
	claimSub       *nats.Subscription

	watchMu sync.Mutex
	watches map[*watch]struct{}
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
	b := &Bus{cfg: cfg, log: log, watches: make(map[*watch]struct{}), keeperDone: make(chan struct{}),
		toPublish: make(chan *eventPublish, publishQueue), awaiting: make(map[*nats.Msg]*eventPublish),
		attemptWatches: make(map[string]map[*attemptWatch]struct{})}
	var err error
	if cfg.URLs != "" {
		b.nc, err = connectExternal(cfg, b.noteDialError)
	} else {
		b.srv, b.nc, err = embed(cfg, log)
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

// startPublisher readies the asynchronous publishing of events (see
// publishEvents).
func (b *Bus) startPublisher() error {
	var err error
	b.eventJS, err = jetstream.New(b.nc, jetstream.WithPublishAsyncTimeout(eventAckWait), jetstream.WithPublishAsyncMaxPending(publishQueue),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) { b.acked(m, ack.Sequence, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { b.acked(m, 0, err) }))
	if err != nil {
		return fmt.Errorf("jetstream for events: %w", err)
	}
	return nil
}

// setupWhenReady creates the streams, waiting while a cluster forms: until
// its nodes have met and elected a JetStream leader, and enough of them are
// up for the replicas asked, creating a stream fails.
func (b *Bus) setupWhenReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.setup(sctx)
		cancel()
		if err == nil {
			return nil
		}
		// One reading of the connection for everything below: nats.go
		// reports why an attempt failed from another goroutine, and two
		// readings could straddle that report, giving an error without
		// its reason or logging a certificate problem as a retry.
		conn := b.connState()
		err = conn.whyNotConnected(err)
		// nats.go closes the connection for good when a server refuses the
		// same credentials twice: waiting longer cannot help.
		// Nor can it when TLS failed on a certificate, ours or the server's.
		if ctx.Err() != nil || time.Now().After(deadline) || conn.status == nats.CLOSED || certificateRefused(conn.last) {
			return err
		}
		if conn.connected() || conn.last != nil {
			b.log.Warn("NATS JetStream not ready yet; retrying", "err", err)
		} else {
			// The first connection attempt has not finished: with no
			// reconnect buffer, requests fail at once until it has.
			b.log.Debug("NATS not connected yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return b.connState().whyNotConnected(ctx.Err())
		case <-time.After(wait):
		}
	}
}

// certificateRefused says err is a TLS certificate problem on either side:
// this process does not trust the server's certificate, or the server
// refused this process's. A configuration error, not an outage.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &verify) || errors.As(err, &alert)
}

// connState is one reading of the connection to NATS: its status and
// lastConnError.
type connState struct {
	status nats.Status
	last   error
}

func (b *Bus) connState() connState {
	return connState{status: b.nc.Status(), last: b.lastConnError()}
}

// connected is nats.Conn.IsConnected for this reading.
func (s connState) connected() bool {
	switch s.status {
	case nats.CONNECTED, nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return true
	}
	return false
}

// whyNotConnected adds to err, when NATS was not connected, the reason the
// server last gave: a timeout alone does not say that it refused our
// credentials or our certificate.
func (s connState) whyNotConnected(err error) error {
	if s.connected() {
		return err
	}
	if s.last != nil {
		return fmt.Errorf("%w; nats not connected: %w", err, s.last)
	}
	return fmt.Errorf("%w; nats not connected (%s)", err, s.status)
}

// lastConnError is the server's last word on a failed connection (a refused
// certificate, an authorization violation), else why it could not be
// reached.
func (b *Bus) lastConnError() error {
	if err := b.nc.LastError(); err != nil {
		return err
	}
	if p := b.dialErr.Load(); p != nil {
		return *p
	}
	return nil
}

// noteDialError records why an attempt to reach NATS failed; nil, that one
// succeeded.
func (b *Bus) noteDialError(err error) {
	if err == nil {
		b.dialErr.Store(nil)
		return
	}
	b.dialErr.Store(&err)
}

// embed starts a NATS server in this process and connects to it in process.
func embed(cfg Config, log *slog.Logger) (*server.Server, *nats.Conn, error) {
	opts := &server.Options{
		ServerName:         "tokencast",
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "nats"),
		DontListen:         cfg.Listen == "",
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 256 << 20,
		MaxPayload:         8 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort("nats listen", cfg.Listen)
		if err != nil {
			return nil, nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if err := clusterOptions(cfg, opts); err != nil {
		return nil, nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("create embedded nats: %w", err)
	}
	// Its warnings and errors (a damaged store it repaired, a disk it
	// cannot write) are ours to report.
	srv.SetLogger(natsLogger{log.With("component", "nats")}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, nil, errors.New("embedded nats did not become ready")
	}
	// No reconnect buffer, as for an external NATS (connectExternal).
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("tokencast"), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return srv, nc, nil
}

// natsLogger passes the embedded server's log to ours: its notices at
// debug (it is chatty at start), warnings at warn, errors at error.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  {}
func (l natsLogger) Tracef(format string, v ...any)  {}

// clusterOptions makes the embedded server a cluster node when routes are
// configured. A node must listen for routes, so DontListen is off; clients
// may still reach it only in process unless --nats-listen is set (a random
// loopback port is opened then, as the server needs one).
func clusterOptions(cfg Config, opts *server.Options) error {
	if cfg.ClusterListen == "" && cfg.Routes == "" {
		return nil
	}
	if cfg.ClusterListen == "" || cfg.Routes == "" {
		return errors.New("a NATS cluster node needs both a cluster listen address and routes")
	}
	host, port, err := splitHostPort("nats cluster listen", cfg.ClusterListen)
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = "tokencast"
	}
	opts.Routes = server.RoutesFromStr(cfg.Routes)
	if len(opts.Routes) == 0 {
		return fmt.Errorf("nats routes %q: no route URL", cfg.Routes)
	}
	opts.ServerName = cfg.ServerName
	if opts.ServerName == "" {
		if opts.ServerName, err = os.Hostname(); err != nil {
			return fmt.Errorf("nats server name: %w", err)
		}
	}
	if opts.DontListen {
		opts.DontListen = false
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	}
	return nil
}

func splitHostPort(what, addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("%s port %q: %w", what, port, err)
	}
	return host, n, nil
}

// connectExternal connects to a NATS cluster, reconnecting forever. It tells
// noteDialError why each failed attempt failed, and nil once one succeeds.
func connectExternal(cfg Config, noteDialError func(error)) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("tokencast"),
		nats.MaxReconnects(-1),
		// Nothing is kept to send again after a reconnect: a publish made
		// while disconnected fails at once, instead of landing later,
		// after it was reported failed (PublishEventAfter relies on it).
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { noteDialError(err) }),
		nats.ConnectHandler(func(*nats.Conn) { noteDialError(nil) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("nats client certificate: needs both a certificate and a key file")
		}
		// Loaded here as well as by nats.go, to say which files are wrong.
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("nats client certificate %s, key %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	nc, err := nats.Connect(cfg.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", cfg.URLs, err)
	}
	return nc, nil
}

func (b *Bus) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	if b.requests, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       requestsStream,
		Subjects:   []string{requestsSubj},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		Replicas:   b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", requestsStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     deadStream,
		Subjects: []string{deadSubj},
		Storage:  jetstream.FileStorage,
		MaxAge:   30 * 24 * time.Hour,
		Replicas: b.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", deadStream, err)
	}
	b.work, err = js.CreateOrUpdateConsumer(ctx, requestsStream, jetstream.ConsumerConfig{
		Durable:       workersName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    b.cfg.MaxDeliver,
		MaxAckPending: 10000,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", workersName, err)
	}
	b.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        eventsStream,
		Subjects:    []string{eventsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.EventRetention,
		Duplicates:  eventDedupWindow(b.cfg),
		AllowDirect: true,
		Replicas:    b.cfg.Replicas,
		RePublish:   &jetstream.RePublish{Source: eventsPrefix + ">", Destination: livePrefix + ">"},
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", eventsStream, err)
	}
	b.turns, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        turnsStream,
		Subjects:    []string{turnsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.SessionTTL,
		Duplicates:  turnDedupWindow(b.cfg),
		AllowDirect: true,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", turnsStream, err)
	}
	b.cancels, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   cancelBucket,
		TTL:      cancelMarkTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", cancelBucket, err)
	}
	b.sessions, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   sessionBucket,
		TTL:      2 * b.cfg.SessionTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", sessionBucket, err)
	}
	b.attempts, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   attemptBucket,
		TTL:      cancelMarkTTL,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", attemptBucket, err)
	}
	if b.health, err = js.CreateOrUpdateKeyValue(ctx, b.healthConfig()); err != nil {
		return fmt.Errorf("create bucket %s: %w", healthBucket, err)
	}
	return nil
}

// eventDedupWindow is how long the events stream remembers a message id:
// long enough for a publish to be retried (publishRetryFor, plus the wait
// for its ack) and for a request to be redelivered after its worker died
// (twice the ack wait), so the event a new attempt publishes again is a
// no-op. No longer: the stream holds every id of the window in memory, one
// per token, and at tens of thousands of tokens a second two minutes of them
// was most of the live heap.
func eventDedupWindow(cfg Config) time.Duration {
	return min(max(publishRetryFor+eventAckWait, 2*cfg.AckWait), cfg.EventRetention)
}

// turnDedupWindow is how long the turns stream remembers a message id: two
// minutes, or the turns' whole life when that is shorter (the stream refuses
// a window longer than its MaxAge).
func turnDedupWindow(cfg Config) time.Duration {
	if cfg.SessionTTL > 0 {
		return min(2*time.Minute, cfg.SessionTTL)
	}
	return 2 * time.Minute
}

// compactID is the message id an event is published under: 22 characters
// (128 bits of SHA-256) instead of the ~85 of session, request, attempt,
// index and type, as each is stored with its event, sent with its live copy
// and held by the stream for the dedup window.
func compactID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// The bus is the workers' request queue; a claim's revision is its key's
// revision in the attempts bucket.
var _ chat.Queue = (*Bus)(nil)

type attemptRecord struct {
	Attempt uint64      `json:"attempt"`
	Final   *chat.Event `json:"final,omitempty"`
}

func attemptKey(session, request string) string { return session + "." + request }

// ClaimAttempt makes this worker the owner of a request, as attempt at
// least min. Claims are compare-and-set on one key, so of two workers that
// both believe they hold the request (a redelivery while the first still
// runs), exactly one can commit its end.
func (b *Bus) ClaimAttempt(ctx context.Context, session, request string, min uint64) (c chat.Claim, err error) {
	err = b.retrying(ctx, "claim "+request, func() error {
		c, err = b.claimAttempt(ctx, session, request, min)
		return err
	})
	return c, err
}

func (b *Bus) claimAttempt(ctx context.Context, session, request string, min uint64) (chat.Claim, error) {
	key := attemptKey(session, request)
	for {
		e, err := b.attempts.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			data, _ := json.Marshal(attemptRecord{Attempt: min})
			rev, err := b.attempts.Create(ctx, key, data)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
			}
			return chat.Claim{Attempt: min, Revision: rev}, nil
		}
		if err != nil {
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		var cur attemptRecord
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		if cur.Final != nil {
			return chat.Claim{Attempt: cur.Attempt, Final: cur.Final}, nil
		}
		next := max(min, cur.Attempt+1)
		data, _ := json.Marshal(attemptRecord{Attempt: next})
		rev, err := b.attempts.Update(ctx, key, data, e.Revision())
		if err != nil {
			if isWrongRevision(err) {
				continue
			}
			return chat.Claim{}, fmt.Errorf("claim %s: %w", request, err)
		}
		return chat.Claim{Attempt: next, Revision: rev}, nil
	}
}

// CommitAttempt records end as the request's terminal event if the claim
// still holds; chat.ErrSuperseded if a newer attempt has claimed the request.
func (b *Bus) CommitAttempt(ctx context.Context, session, request string, c chat.Claim, end chat.Event) error {
	data, err := json.Marshal(attemptRecord{Attempt: c.Attempt, Final: &end})
	if err != nil {
		return fmt.Errorf("encode end of %s: %w", request, err)
	}
	// A commit whose answer was lost fails its retry with a wrong revision
	// and is taken for superseded: the next delivery then finds the end
	// committed and publishes it, so nothing is lost either way.
	var superseded bool
	err = b.retrying(ctx, "commit "+request, func() error {
		_, err := b.attempts.Update(ctx, attemptKey(session, request), data, c.Revision)
		if isWrongRevision(err) {
			superseded = true
			return nil
		}
		return err
	})
	if superseded {
		return chat.ErrSuperseded
	}
	if err != nil {
		return fmt.Errorf("commit end of %s: %w", request, err)
	}
	return nil
}

func isWrongRevision(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }

// SessionOwner returns the owner of a session; found is false for a
// session nobody owns (new, or expired). A store error is an error, never
// "not found": ownership fails closed. When the owner is the one asking
// (user), the session counts as used.
func (b *Bus) SessionOwner(ctx context.Context, session, user string) (owner string, found bool, err error) {
	e, err := b.sessions.Get(ctx, session)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("owner of session %s: %w", session, err)
	}
	// The record lives for twice the session TTL from its last write; one
	// in use is written again once it is half a TTL old, so it outlives the
	// turns (kept one TTL) of a session in use.
	if b.cfg.SessionTTL > 0 && string(e.Value()) == user && time.Since(e.Created()) > b.cfg.SessionTTL/2 {
		if _, err := b.sessions.Update(ctx, session, e.Value(), e.Revision()); err != nil && !isWrongRevision(err) {
			b.log.Warn("refresh session owner", "session", session, "err", err)
		}
	}
	return string(e.Value()), true, nil
}

// ClaimSession binds a session to owner if it has no owner yet, and returns
// the session's owner either way. The bind is atomic across nodes.
func (b *Bus) ClaimSession(ctx context.Context, session, owner string) (string, error) {
	_, err := b.sessions.Create(ctx, session, []byte(owner))
	if err == nil {
		return owner, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("claim session %s: %w", session, err)
	}
	e, err := b.sessions.Get(ctx, session)
	if err != nil {
		return "", fmt.Errorf("owner of session %s: %w", session, err)
	}
	return string(e.Value()), nil
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

// Enqueue hands a request to the workers. The request id is the NATS message
// id, so the same request enqueued twice within the duplicate window is one.
func (b *Bus) Enqueue(ctx context.Context, req chat.Request) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := b.js.Publish(ctx, requestsSubj, data, jetstream.WithMsgID(req.SessionID+"."+req.ID)); err != nil {
		return fmt.Errorf("enqueue request %s: %w", req.ID, b.storageFault(err))
	}
	return nil
}

// Delivery is a request handed to a worker; it must be acked, or nacked, or
// left to expire so another worker gets it.
type Delivery struct {
	request chat.Request
	attempt uint64 // deliveries of this request, from 1
	msg     jetstream.Msg
	nc      *nats.Conn
}

var _ chat.Delivery = (*Delivery)(nil)

// Request is the request delivered.
func (d *Delivery) Request() chat.Request { return d.request }

// Attempt counts deliveries of this request, from 1.
func (d *Delivery) Attempt() uint64 { return d.attempt }

// Ack says the request is done.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// InProgress resets the redelivery timer while an answer is generated.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Release hands the request back for another attempt after delay, and waits
// for the server to confirm. A NAK with a delay is written to the consumer's
// store (a plain one is not), so the hand-back survives the server stopping
// right after it, as it does at shutdown.
func (d *Delivery) Release(ctx context.Context, delay time.Duration) error {
	body := fmt.Appendf(nil, `-NAK {"delay": %d}`, max(delay, time.Millisecond).Nanoseconds())
	if _, err := d.nc.RequestWithContext(ctx, d.msg.Reply(), body); err != nil {
		return fmt.Errorf("release request %s: %w", d.request.ID, err)
	}
	return nil
}

// Drop removes a request that cannot be decoded or retried.
func (d *Delivery) Drop() error { return d.msg.Term() }

// NextRequest waits for the next request, until ctx ends.
func (b *Bus) NextRequest(ctx context.Context) (chat.Delivery, error) {
	for {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := b.work.Next(jetstream.FetchContext(fctx))
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fetch request: %w", err)
		}
		d := &Delivery{msg: msg, nc: b.nc}
		if md, err := msg.Metadata(); err == nil {
			d.attempt = md.NumDelivered
		}
		if err := json.Unmarshal(msg.Data(), &d.request); err != nil {
			b.log.Error("dropping undecodable request", "err", err)
			_ = msg.Term()
			continue
		}
		return d, nil
	}
}

func eventSubject(session string) string { return eventsPrefix + session }
func turnSubject(session string) string  { return turnsPrefix + session }

// PublishEvent appends an event to its session's history and delivers it to
// the session's watchers. It returns the event's position in the history.
// msgID, when set, makes a retried publish of the same event a no-op.
func (b *Bus) PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error) {
	data, err := encodeEvent(&ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	var seq uint64
	publish := func() (err error) {
		seq, err = b.publishEvent(ctx, eventSubject(ev.SessionID), data, msgID)
		return err
	}
	if msgID == "" {
		err = publish()
	} else {
		err = b.retrying(ctx, "publish "+eventSubject(ev.SessionID), publish)
	}
	if err != nil {
		return 0, fmt.Errorf("publish %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return seq, nil
}

// PublishEventAfter publishes an event of an answer whose previous event is
// at position after, without a message id: the stream would remember one for
// every token for its whole dedup window. A publish that fails may still have
// landed (its ack was lost), so before publishing it again it is looked for
// among the session's events after the previous one; the connection keeps
// nothing to send after a reconnect, so a failed publish cannot land after
// that look.
func (b *Bus) PublishEventAfter(ctx context.Context, ev chat.Event, after uint64) (uint64, error) {
	data, err := encodeEvent(&ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	subject := eventSubject(ev.SessionID)
	var (
		seq       uint64
		failed    bool
		timedOut  time.Time // when a publish last went unacknowledged
		errUnseen = errors.New("an unacknowledged publish has not landed yet")
	)
	err = b.retrying(ctx, "publish "+subject, func() (err error) {
		if failed {
			var found bool
			if seq, found, err = b.landed(ctx, &ev, after); err != nil || found {
				if found {
					b.log.Info("a publish reported failed had landed", "session", ev.SessionID, "request", ev.RequestID, "index", ev.Index, "seq", seq)
				}
				return err
			}
			// Unacknowledged is not lost: a stream far behind may store it
			// yet. It is given as long again before it is published again.
			if !timedOut.IsZero() && time.Since(timedOut) < eventAckWait {
				return errUnseen
			}
		}
		seq, err = b.publishEvent(ctx, subject, data, "")
		failed = err != nil
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			timedOut = time.Now()
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("publish %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return seq, nil
}

// landed looks for ev among its session's events after position after:
// the same answer, attempt, index and type.
func (b *Bus) landed(ctx context.Context, ev *chat.Event, after uint64) (seq uint64, found bool, err error) {
	subject := eventSubject(ev.SessionID)
	for from := after + 1; ; from = seq + 1 {
		var data []byte
		data, seq, found, err = b.leaderNext(ctx, subject, from)
		if err != nil || !found {
			return 0, false, err
		}
		got, err := decodeEvent(data, seq)
		if err == nil && got.RequestID == ev.RequestID && got.Attempt == ev.Attempt && got.Index == ev.Index && got.Type == ev.Type {
			return seq, true, nil
		}
	}
}

// leaderNext reads the first message of subject at or after position from
// in the events stream, from the stream's leader: a direct get may be
// answered by a replica that has not caught up with what was acknowledged.
func (b *Bus) leaderNext(ctx context.Context, subject string, from uint64) (data []byte, seq uint64, found bool, err error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, subject})
	if err != nil {
		return nil, 0, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+eventsStream, req)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read %s from %d: %w", subject, from, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, false, fmt.Errorf("read %s from %d: %w", subject, from, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return nil, 0, false, nil
	case resp.Error != nil:
		return nil, 0, false, fmt.Errorf("read %s from %d: %s", subject, from, resp.Error.Description)
	case resp.Message == nil:
		return nil, 0, false, fmt.Errorf("read %s from %d: an empty answer", subject, from)
	}
	return resp.Message.Data, resp.Message.Seq, true, nil
}

// publishQueue bounds the events waiting for publishEvents, and those
// published and waiting for their acknowledgement.
const publishQueue = 4096

// eventAckWait is how long a published event may wait for the stream's
// acknowledgement before it counts as failed.
const eventAckWait = 5 * time.Second

// eventPublish is one event on its way through publishEvents.
type eventPublish struct {
	msg  *nats.Msg
	seq  uint64
	err  error
	done chan struct{}
}

// publishEvent hands an event to publishEvents and waits for its ack.
// Thousands of answers streaming at once would otherwise each take the
// connection's lock for a request of their own, and convoy on it.
func (b *Bus) publishEvent(ctx context.Context, subject string, data []byte, msgID string) (uint64, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, compactID(msgID))
	}
	p := &eventPublish{msg: m, done: make(chan struct{})}
	select {
	case b.toPublish <- p:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.keeperDone:
		return 0, nats.ErrConnectionClosed
	}
	select {
	case <-p.done:
		return p.seq, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.keeperDone: // closing: it may or may not be published
		return 0, nats.ErrConnectionClosed
	}
}

// publishEvents publishes the queued events without waiting for their acks:
// JetStream's ack (or a failure: a timeout after eventAckWait, a lost
// connection) comes to acked.
func (b *Bus) publishEvents() {
	for {
		select {
		case <-b.keeperDone:
			return // what is still queued is failed by its caller
		case p := <-b.toPublish:
			b.awaitMu.Lock()
			b.awaiting[p.msg] = p
			b.awaitMu.Unlock()
			if _, err := b.eventJS.PublishMsgAsync(p.msg); err != nil {
				b.acked(p.msg, 0, err)
			}
		}
	}
}

// acked hands a published event its position, or why it failed, once.
func (b *Bus) acked(m *nats.Msg, seq uint64, err error) {
	b.awaitMu.Lock()
	p := b.awaiting[m]
	delete(b.awaiting, m)
	b.awaitMu.Unlock()
	if p == nil {
		return
	}
	p.seq, p.err = seq, err
	close(p.done)
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

// LastEvent returns the newest event of a session, or nil when it has none.
func (b *Bus) LastEvent(ctx context.Context, session string) (*chat.Event, error) {
	raw, err := b.events.GetLastMsgForSubject(ctx, eventSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last event of %s: %w", session, err)
	}
	ev, err := decodeEvent(raw.Data, raw.Sequence)
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

// History bounds: the first and last position currently held.
func (b *Bus) History(ctx context.Context) (first, last uint64, err error) {
	info, err := b.events.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("events stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

func decodeEvent(data []byte, seq uint64) (chat.Event, error) {
	var ev chat.Event
	if err := unmarshalEvent(data, &ev); err != nil {
		return ev, fmt.Errorf("decode event %d: %w", seq, err)
	}
	ev.Seq = seq
	return ev, nil
}

// ReplayEvents calls fn for each event of the session with a position in
// [from, to], in order.
func (b *Bus) ReplayEvents(ctx context.Context, session string, from, to uint64, fn func(chat.Event) error) error {
	return readRange(ctx, b.events, eventSubject(session), from, to, func(data []byte, seq uint64) error {
		ev, err := decodeEvent(data, seq)
		if err != nil {
			return err
		}
		return fn(ev)
	})
}

// readRange reads the messages of one subject with positions in [from, to],
// one direct get at a time: no consumer is created, so nothing is left on the
// server however many reads run.
func readRange(ctx context.Context, s jetstream.Stream, subject string, from, to uint64, fn func([]byte, uint64) error) error {
	for seq := max(from, 1); seq <= to; {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s at %d: %w", subject, seq, err)
		}
		if raw.Sequence > to {
			return nil
		}
		if err := fn(raw.Data, raw.Sequence); err != nil {
			return err
		}
		seq = raw.Sequence + 1
	}
	return nil
}

// watch is one session's live delivery on this node.
type watch struct {
	session string
	fn      func(chat.Event)
	ctx     context.Context

	mu   sync.Mutex
	last uint64 // newest position delivered
	// midAnswer: the newest event delivered does not end an answer, so more
	// must come; quietSince is when the last event or probe happened.
	midAnswer  bool
	quietSince time.Time
}

// deliver hands ev to the watcher; w.mu is held.
func (w *watch) deliver(ev chat.Event) {
	w.last = ev.Seq
	w.midAnswer = !ev.Type.Terminal()
	w.quietSince = time.Now()
	w.fn(ev)
}

// fill delivers the stored events in (w.last, to]; w.mu is held.
func (b *Bus) fill(w *watch, to uint64) error {
	return b.ReplayEvents(w.ctx, w.session, w.last+1, to, func(ev chat.Event) error {
		w.deliver(ev)
		return nil
	})
}

// catchUp delivers whatever the session's history holds beyond what the
// watch has delivered: events whose live copy never arrived because this
// connection was away (a NATS node died) or because the stream leader that
// stored them died before republishing them.
func (b *Bus) catchUp(w *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.quietSince = time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	raw, err := b.events.GetLastMsgForSubject(ctx, eventSubject(w.session))
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			b.log.Warn("catch up with session history", "session", w.session, "err", err)
		}
		return
	}
	if raw.Sequence <= w.last {
		return
	}
	b.log.Info("catching up with events missed live", "session", w.session, "from", w.last+1, "to", raw.Sequence)
	if err := b.fill(w, raw.Sequence); err != nil {
		b.log.Warn("catch up with session history", "session", w.session, "err", err)
	}
}

// quietAfter is how long a watch waits mid-answer without an event before it
// asks the history whether it missed some.
const quietAfter = 2 * time.Second

// watchKeeper catches every watch up after the connection comes back, and
// probes the history of watches left silent mid-answer, until stop closes.
func (b *Bus) watchKeeper(reconnected <-chan struct{}, stop <-chan struct{}) {
	tick := time.NewTicker(quietAfter / 2)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-stop:
			return
		case <-reconnected:
			all = true
		case <-tick.C:
		}
		b.watchMu.Lock()
		var due []*watch
		for w := range b.watches {
			w.mu.Lock()
			if all || (w.midAnswer && time.Since(w.quietSince) >= quietAfter) {
				due = append(due, w)
			}
			w.mu.Unlock()
		}
		b.watchMu.Unlock()
		for _, w := range due {
			b.catchUp(w)
		}
	}
}

// Watch delivers, in order, every event of the session stored after the
// position it returns, until stop is called; fn is never called twice at
// once. Live events come from a plain subscription to the republished events
// (no consumer on the server); a gap (a message lost on the way, seen from
// Nats-Last-Sequence) is filled from the history before the event that
// revealed it, and a watch catches up from the history after a reconnect or
// when it falls silent mid-answer. The position is read after the
// subscription is in place, so nothing stored after it can be missed.
func (b *Bus) Watch(ctx context.Context, session string, fn func(chat.Event)) (stop func(), from uint64, err error) {
	w := &watch{session: session, fn: fn, ctx: ctx}
	w.mu.Lock() // held until last is known
	sub, err := b.nc.Subscribe(livePrefix+session, func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if m.Header.Get(unstoredHeader) != "" {
			b.deliverUnstored(w, m.Data)
			return
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq <= w.last {
			return // already covered (or not a republished event)
		}
		if prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64); prev > w.last {
			_ = b.fill(w, prev)
		}
		ev, err := decodeEvent(m.Data, seq)
		if err != nil {
			b.log.Error("undecodable event", "session", session, "err", err)
			return
		}
		w.deliver(ev)
	})
	if err != nil {
		w.mu.Unlock()
		return nil, 0, fmt.Errorf("watch %s: %w", session, err)
	}
	if err := b.nc.Flush(); err != nil {
		w.mu.Unlock()
		_ = sub.Unsubscribe()
		return nil, 0, fmt.Errorf("watch %s: %w", session, err)
	}
	_, w.last, err = b.History(ctx)
	from = w.last
	w.quietSince = time.Now()
	w.mu.Unlock()
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, 0, err
	}
	b.watchMu.Lock()
	b.watches[w] = struct{}{}
	b.watchMu.Unlock()
	return func() {
		b.watchMu.Lock()
		delete(b.watches, w)
		b.watchMu.Unlock()
		_ = sub.Unsubscribe()
	}, from, nil
}

// WatchAttempts calls fn with the attempt of every claim on one answer until
// stop is called, so a worker learns when a newer attempt has taken its
// request over. It listens to the claims themselves (the KV bucket's
// subject), not to the session's events, so it costs nothing per token; one
// subscription of the process serves every answer's watch, so it costs no
// goroutine and no round trip per answer either.
func (b *Bus) WatchAttempts(session, request string, fn func(attempt uint64)) (stop func(), err error) {
	key := attemptKey(session, request)
	w := &attemptWatch{fn: fn}
	b.attemptMu.Lock()
	if err := b.watchClaims(); err != nil {
		b.attemptMu.Unlock()
		return nil, fmt.Errorf("watch attempts of %s: %w", request, err)
	}
	if b.attemptWatches[key] == nil {
		b.attemptWatches[key] = make(map[*attemptWatch]struct{})
	}
	b.attemptWatches[key][w] = struct{}{}
	b.attemptMu.Unlock()
	stop = func() {
		b.attemptMu.Lock()
		defer b.attemptMu.Unlock()
		if delete(b.attemptWatches[key], w); len(b.attemptWatches[key]) == 0 {
			delete(b.attemptWatches, key)
		}
	}
	// A claim made before the watch was registered is read instead.
	e, err := b.attempts.Get(context.Background(), key)
	var rec attemptRecord
	if err == nil && json.Unmarshal(e.Value(), &rec) == nil {
		fn(rec.Attempt)
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		stop()
		return nil, fmt.Errorf("watch attempts of %s: %w", request, err)
	}
	return stop, nil
}

// attemptWatch is one WatchAttempts caller.
type attemptWatch struct{ fn func(attempt uint64) }

// watchClaims subscribes, once, to every claim in the attempts bucket and
// hands each to the watches of its key; b.attemptMu is held.
func (b *Bus) watchClaims() error {
	if b.claimSub != nil {
		return nil
	}
	prefix := "$KV." + attemptBucket + "."
	sub, err := b.nc.Subscribe(prefix+">", func(m *nats.Msg) {
		key := strings.TrimPrefix(m.Subject, prefix)
		b.attemptMu.Lock()
		watches := make([]*attemptWatch, 0, len(b.attemptWatches[key]))
		for w := range b.attemptWatches[key] {
			watches = append(watches, w)
		}
		b.attemptMu.Unlock()
		var rec attemptRecord
		if len(watches) == 0 || json.Unmarshal(m.Data, &rec) != nil {
			return // nobody here works on it, or a deletion
		}
		for _, w := range watches {
			w.fn(rec.Attempt)
		}
	})
	if err != nil {
		return err
	}
	// Claims made from here on reach the watches registered after this.
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	b.claimSub = sub
	return nil
}

// AppendTurn stores a turn record of a conversation. A record with the same
// request, role, status and attempt is stored once.
func (b *Bus) AppendTurn(ctx context.Context, session string, t chat.Turn) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode turn: %w", err)
	}
	id := session + "." + t.RequestID + "." + string(t.Role) + "." + string(t.Status)
	if t.Attempt > 0 {
		id += "." + strconv.FormatUint(t.Attempt, 10)
	}
	if _, err := b.publishRetrying(ctx, turnSubject(session), data, id); err != nil {
		return fmt.Errorf("store %s turn of %s: %w", t.Role, session, err)
	}
	return nil
}

// LatestTurn returns the newest turn record of a session, nil for none.
func (b *Bus) LatestTurn(ctx context.Context, session string) (*chat.Turn, error) {
	last, err := b.turns.GetLastMsgForSubject(ctx, turnSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest turn of %s: %w", session, err)
	}
	var t chat.Turn
	if err := json.Unmarshal(last.Data, &t); err != nil {
		return nil, fmt.Errorf("decode turn %d: %w", last.Sequence, err)
	}
	return &t, nil
}

// HasConversation reports whether a session has stored turns.
func (b *Bus) HasConversation(ctx context.Context, session string) (bool, error) {
	t, err := b.LatestTurn(ctx, session)
	return t != nil, err
}

// Conversation loads every turn of a session.
func (b *Bus) Conversation(ctx context.Context, session string) (chat.Conversation, error) {
	conv := chat.Conversation{SessionID: session}
	last, err := b.turns.GetLastMsgForSubject(ctx, turnSubject(session))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return conv, nil
	}
	if err != nil {
		return conv, fmt.Errorf("load conversation %s: %w", session, err)
	}
	err = readRange(ctx, b.turns, turnSubject(session), 1, last.Sequence, func(data []byte, seq uint64) error {
		var t chat.Turn
		if err := json.Unmarshal(data, &t); err != nil {
			return fmt.Errorf("decode turn %d: %w", seq, err)
		}
		conv.Apply(t)
		return nil
	})
	return conv, err
}

func cancelKey(session, request string) string { return session + "." + request }

// Cancel asks for an answer to stop: a mark that a worker checks before it
// starts, and a live notice to the worker generating it.
func (b *Bus) Cancel(ctx context.Context, session, request string) error {
	if _, err := b.cancels.Put(ctx, cancelKey(session, request), []byte{1}); err != nil {
		return fmt.Errorf("mark %s cancelled: %w", request, err)
	}
	if err := b.nc.Publish(cancelPrefix+cancelKey(session, request), nil); err != nil {
		return fmt.Errorf("notify cancel of %s: %w", request, err)
	}
	return nil
}

// Cancelled reports whether an answer was asked to stop.
func (b *Bus) Cancelled(ctx context.Context, session, request string) (bool, error) {
	_, err := b.cancels.Get(ctx, cancelKey(session, request))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cancel mark of %s: %w", request, err)
	}
	return true, nil
}

// WatchCancels calls fn for every cancel notice until stop is called.
func (b *Bus) WatchCancels(fn func(session, request string)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(cancelPrefix+"*.*", func(m *nats.Msg) {
		key := strings.TrimPrefix(m.Subject, cancelPrefix)
		session, request, ok := strings.Cut(key, ".")
		if ok {
			fn(session, request)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch cancels: %w", err)
	}
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch cancels: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// DeadLetter is a request that failed on every delivery.
type DeadLetter = chat.DeadLetter

// WatchExhausted calls fn, on one node of the cluster, for each request whose
// deliveries ran out (its workers kept dying or failing).
func (b *Bus) WatchExhausted(fn func(req chat.Request, deliveries uint64) error) (stop func(), err error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + requestsStream + "." + workersName
	sub, err := b.nc.QueueSubscribe(subject, "tc-dead-letters", func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			b.log.Error("undecodable max-deliveries advisory", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		raw, err := b.requests.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			b.log.Error("exhausted request gone", "seq", adv.StreamSeq, "err", err)
			return
		}
		var req chat.Request
		if err := json.Unmarshal(raw.Data, &req); err != nil {
			b.log.Error("undecodable exhausted request", "seq", adv.StreamSeq, "err", err)
			return
		}
		// The request leaves the queue only once its end is published: no
		// advisory comes again for it, so a failure here is retried.
		for try := 0; ; try++ {
			err := fn(req, adv.Deliveries)
			if err == nil {
				break
			}
			if try == 4 {
				b.log.Error("could not end an exhausted request; it stays in the queue", "request", req.ID, "err", err)
				return
			}
			time.Sleep(time.Second << try)
		}
		if err := b.requests.DeleteMsg(ctx, adv.StreamSeq); err != nil {
			b.log.Error("remove exhausted request", "request", req.ID, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch exhausted requests: %w", err)
	}
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch exhausted requests: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// RecordDeadLetter keeps a dead letter for the operator.
func (b *Bus) RecordDeadLetter(ctx context.Context, d DeadLetter) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	if _, err := b.js.Publish(ctx, deadSubj, data, jetstream.WithMsgID(d.Request.SessionID+"."+d.Request.ID)); err != nil {
		return fmt.Errorf("record dead letter %s: %w", d.Request.ID, err)
	}
	return nil
}

// DeadLetters returns the newest last dead letters, oldest first.
func (b *Bus) DeadLetters(ctx context.Context, last int) ([]DeadLetter, error) {
	s, err := b.js.Stream(ctx, deadStream)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out := []DeadLetter{}
	if last <= 0 || info.State.Msgs == 0 {
		return out, nil
	}
	from := info.State.FirstSeq
	if info.State.LastSeq >= uint64(last) {
		from = max(from, info.State.LastSeq-uint64(last)+1)
	}
	err = readRange(ctx, s, deadSubj, from, info.State.LastSeq, func(data []byte, seq uint64) error {
		var d DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("decode dead letter %d: %w", seq, err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// QueueDepth reports the requests waiting for a worker and those a worker
// holds but has not finished.
func (b *Bus) QueueDepth(ctx context.Context) (waiting, inFlight int, err error) {
	info, err := b.work.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("request queue: %w", err)
	}
	return int(info.NumPending), info.NumAckPending, nil
}
