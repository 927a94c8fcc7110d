// Package bus owns NATS: the embedded server, the streams, their subjects and
// retention. Nothing outside this package names a stream or a subject.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
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

	turnsStream = "TC_TURNS"
	turnsPrefix = "tc.turn."

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
	// MaxDeliver bounds how often one request is handed to a worker.
	MaxDeliver int
	// AckWait is how long a worker may hold a request without a sign of life.
	AckWait time.Duration
}

// Bus is a connection to NATS JetStream with tokencast's streams in place.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	srv     *server.Server // nil when NATS is external
	nc      *nats.Conn
	js      jetstream.JetStream
	events  jetstream.Stream
	turns   jetstream.Stream
	work    jetstream.Consumer
	cancels jetstream.KeyValue
}

// Open starts the embedded NATS server under cfg.DataDir, connects to it in
// process and makes sure the streams exist.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 24 * time.Hour
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:         "tokencast",
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "nats"),
		DontListen:         true,
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 256 << 20,
		MaxPayload:         8 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("create embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats did not become ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("tokencast"), nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	b := &Bus{cfg: cfg, log: log, srv: srv, nc: nc}
	if err := b.setup(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bus) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       requestsStream,
		Subjects:   []string{requestsSubj},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", requestsStream, err)
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
		Duplicates:  min(2*time.Minute, b.cfg.EventRetention),
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", eventsStream, err)
	}
	b.turns, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        turnsStream,
		Subjects:    []string{turnsPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", turnsStream, err)
	}
	b.cancels, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  cancelBucket,
		TTL:     cancelMarkTTL,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", cancelBucket, err)
	}
	return nil
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() {
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
	if _, err := b.events.Info(ctx); err != nil {
		return fmt.Errorf("events stream: %w", err)
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
		return fmt.Errorf("enqueue request %s: %w", req.ID, err)
	}
	return nil
}

// Delivery is a request handed to a worker; it must be acked, or nacked, or
// left to expire so another worker gets it.
type Delivery struct {
	Request chat.Request
	// Attempt counts deliveries of this request, from 1.
	Attempt uint64
	msg     jetstream.Msg
}

// Ack says the request is done.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// InProgress resets the redelivery timer while an answer is generated.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Release hands the request back for another attempt after delay.
func (d *Delivery) Release(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// Drop removes a request that cannot be decoded or retried.
func (d *Delivery) Drop() error { return d.msg.Term() }

// NextRequest waits for the next request, until ctx ends.
func (b *Bus) NextRequest(ctx context.Context) (*Delivery, error) {
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
		d := &Delivery{msg: msg}
		if md, err := msg.Metadata(); err == nil {
			d.Attempt = md.NumDelivered
		}
		if err := json.Unmarshal(msg.Data(), &d.Request); err != nil {
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
	data, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := b.js.Publish(ctx, eventSubject(ev.SessionID), data, opts...)
	if err != nil {
		return 0, fmt.Errorf("publish %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return ack.Sequence, nil
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
	if err := json.Unmarshal(data, &ev); err != nil {
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

// readRange reads the messages of one subject with positions in [from, to].
func readRange(ctx context.Context, s jetstream.Stream, subject string, from, to uint64, fn func([]byte, uint64) error) error {
	if from < 1 {
		from = 1
	}
	if to < from {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return fmt.Errorf("replay %s: %w", subject, err)
	}
	for {
		done, err := readBatch(ctx, cons, subject, to, fn)
		if done || err != nil {
			return err
		}
	}
}

// readBatch reads one batch; the fetch ends with it, so no pull outlives it.
func readBatch(ctx context.Context, cons jetstream.Consumer, subject string, to uint64, fn func([]byte, uint64) error) (done bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	batch, err := cons.Fetch(256, jetstream.FetchContext(fctx))
	if err != nil {
		return true, fmt.Errorf("replay %s: %w", subject, err)
	}
	n := 0
	for msg := range batch.Messages() {
		n++
		md, err := msg.Metadata()
		if err != nil {
			return true, fmt.Errorf("replay %s: %w", subject, err)
		}
		seq := md.Sequence.Stream
		if seq > to {
			return true, nil
		}
		if err := fn(msg.Data(), seq); err != nil {
			return true, err
		}
		if seq == to || md.NumPending == 0 {
			return true, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return true, fmt.Errorf("replay %s: %w", subject, err)
	}
	// Nothing (more) is stored for this subject up to "to".
	return n == 0, ctx.Err()
}

// Watch delivers every event of the session stored after position after, in
// order, until the returned stop is called. fn runs on one goroutine.
func (b *Bus) Watch(ctx context.Context, session string, after uint64, fn func(chat.Event)) (stop func(), err error) {
	cons, err := b.events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{eventSubject(session)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", session, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			b.log.Error("event without metadata", "session", session, "err", err)
			return
		}
		ev, err := decodeEvent(msg.Data(), md.Sequence.Stream)
		if err != nil {
			b.log.Error("undecodable event", "session", session, "err", err)
			return
		}
		fn(ev)
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", session, err)
	}
	return func() {
		cc.Stop()
		<-cc.Closed()
	}, nil
}

// AppendTurn stores a turn record of a conversation. A record with the same
// request, role and status is stored once.
func (b *Bus) AppendTurn(ctx context.Context, session string, t chat.Turn) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode turn: %w", err)
	}
	id := session + "." + t.RequestID + "." + string(t.Role) + "." + string(t.Status)
	if _, err := b.js.Publish(ctx, turnSubject(session), data, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("store %s turn of %s: %w", t.Role, session, err)
	}
	return nil
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
