package wsproto

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/stream"
)

// dialect is one GraphQL-over-WebSocket protocol.
type dialect interface {
	// handle processes one client message.
	handle(c *conn, data []byte)
	// frame wraps a subscription's data object (as a Shape encodes it).
	frame(id string, data []byte) []byte
	// result wraps a whole execution result ({"data":…,"errors":…}).
	result(id string, payload []byte) []byte
	// errorFrame reports a failed operation.
	errorFrame(id string, errs gqlerror.List) []byte
	// complete ends an operation from the server side.
	complete(id string) []byte
	// ack confirms a subscription is live (sent once the hub has attached
	// it, before its first event); nil when the dialect has no such message.
	ack(id string) []byte
}

// conn is one WebSocket connection: the reader runs on the connection's
// goroutine; everything sent goes through the bounded queue out, whose writer
// runs only while there is something to write or the connection is closing.
// An idle connection is one goroutine blocked in a read and a few timers.
type conn struct {
	s  *Server
	ws *websocket.Conn
	// reqAuth is the upgrade request's auth object (AppSync's ?header= or
	// header-… subprotocol, else its x-api-key and Authorization headers).
	reqAuth    authObject
	reqAuthErr error
	dialect    dialect
	// flavourKnown is set once a graphql-ws connection's first start told
	// AppSync from legacy Apollo; only message handling, one message at a
	// time, uses it.
	flavourKnown bool
	keepAlive    bool
	ctx          context.Context
	cancel       context.CancelFunc

	// q is the connection's outgoing side: its bounded outbox, and how it
	// closes when the client does not keep up.
	q       stream.Queue
	closing chan struct{}
	readEnd chan struct{}
	closed  chan struct{} // the writer has closed the connection
	once    sync.Once
	code    int
	reason  string

	expiry *time.Timer // closes the connection when its token expires
	ka     *time.Timer // AppSync keep-alive; under mu

	// addr and origin are where the connection comes from, for the caps
	// of a public key and for the log.
	addr   netip.Addr
	origin string
	// lease is the connection's slots: pending until it authenticates,
	// then the node's and its principal's.
	lease *stream.Lease

	mu        sync.Mutex
	principal *auth.Principal
	acked     bool
	inits     int
	subs      map[string]*subscription
	// queries are the queries and mutations running beside the reader.
	queries sync.WaitGroup
}

type subscription struct {
	stream.Sink // Deliver and Replay, for the hub
	c           *conn
	id          string
	shape       *graph.Shape
	hub         *hub.Subscriber
	// cancel ends a query or mutation in flight; nil for a subscription.
	cancel context.CancelFunc
}

func newConn(s *Server, ws *websocket.Conn, r *http.Request, lease *stream.Lease) *conn {
	// The connection outlives the request: keep only its credentials.
	ctx, cancel := context.WithCancel(context.Background())
	obj, _, err := requestAuthObject(r)
	c := &conn{
		s: s, ws: ws, reqAuth: obj, reqAuthErr: err, ctx: ctx, cancel: cancel,
		addr: s.policy.ClientAddr(r), origin: r.Header.Get("Origin"), lease: lease,
		closing: make(chan struct{}),
		readEnd: make(chan struct{}),
		closed:  make(chan struct{}),
		subs:    make(map[string]*subscription),
	}
	c.q = stream.Queue{
		Out:           stream.NewOutbox(s.cfg.QueueSize, s.cfg.QueueBytes, func() { go c.writeLoop() }),
		Closing:       c.closing,
		Slow:          func() { c.close(CloseSlow, "slow consumer: resume from your last cursor") },
		ReplayTimeout: s.cfg.WriteTimeout,
	}
	return c
}

func (c *conn) run() {
	switch c.ws.Subprotocol() {
	case SubprotocolTransportWS:
		c.dialect = transportWS{}
	case SubprotocolGraphQLWS:
		c.dialect = appSync{maxPayload: c.s.cfg.MaxPayload}
		c.keepAlive = true
	case SubprotocolEvents:
		c.dialect = eventsWS{maxPayload: c.s.cfg.MaxPayload}
		c.keepAlive = true
	default:
		c.dialect = transportWS{}
		c.close(4406, "Subprotocol not acceptable")
	}
	if c.keepAlive {
		c.mu.Lock()
		c.ka = time.AfterFunc(c.s.cfg.KeepAlive, c.keepAliveTick)
		c.mu.Unlock()
	}
	init := time.AfterFunc(c.s.cfg.InitTimeout, func() {
		c.mu.Lock()
		acked := c.acked
		c.mu.Unlock()
		if !acked {
			c.close(4408, "Connection initialisation timeout")
		}
	})
	c.readLoop()
	init.Stop()
	close(c.readEnd)
	c.close(websocket.CloseNormalClosure, "")
	<-c.closed
	c.cancel()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Lock()
	if c.ka != nil {
		c.ka.Stop()
	}
	subs := c.subs
	c.subs = nil
	c.principal = nil
	c.mu.Unlock()
	c.lease.Release()
	for _, sub := range subs {
		if sub != nil && sub.hub != nil { // nil: reserved, never started
			sub.hub.Close()
		}
	}
	c.queries.Wait() // c.cancel ended their contexts
}

// handle processes one client message on a goroutine of its own while the
// reader waits: parsing and executing an operation takes a deep stack, and
// a goroutine's stack does not shrink back below what it needs while blocked,
// so the reader, idle for most of a connection's life, stays at its smallest.
// Client messages are few (init, start, stop, ping); events never pass here.
func (c *conn) handle(data []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.survive()
		c.dialect.handle(c, data)
	}()
	<-done
}

// survive, deferred, makes a bug met on one client's message end that
// connection, not the server. Resolvers' panics never get here: the executor
// answers them INTERNAL.
func (c *conn) survive() {
	if r := recover(); r != nil {
		c.s.log.Error("panic while handling a client message; closing the connection", "panic", r, "stack", string(debug.Stack()))
		c.close(CloseInternalError, "Internal server error")
	}
}

func (c *conn) readLoop() {
	c.ws.SetReadLimit(c.s.cfg.ReadLimit)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.close(websocket.CloseMessageTooBig, "message too big")
			}
			return
		}
		select {
		case <-c.closing:
			continue // drain until the peer answers our close
		default:
		}
		if typ != websocket.TextMessage {
			c.close(4400, "Invalid message: expected a text frame")
			continue
		}
		c.handle(data)
	}
}

// writeLoop drains the queue and exits when it is empty; it is started by
// the outbox when a frame is queued or the connection must close.
func (c *conn) writeLoop() {
	for {
		batch, closing := c.q.Out.Next()
		if closing {
			c.closeSocket()
			return
		}
		if batch == nil {
			return
		}
		for _, frame := range batch {
			if !c.write(frame) {
				break // closing now: the next turn closes the socket
			}
		}
	}
}

// closeSocket ends the connection: what was queued before the close, the
// close frame with its code, a moment for the peer to answer, then the TCP
// connection.
func (c *conn) closeSocket() {
	defer close(c.closed)
	if c.code != websocket.CloseAbnormalClosure {
		c.flush()
		msg := websocket.FormatCloseMessage(c.code, c.reason)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		// Give the peer a moment to answer so it reads our code before the
		// TCP connection goes.
		select {
		case <-c.readEnd:
		case <-time.After(time.Second):
		}
	}
	c.ws.Close()
}

// keepAliveTick queues an AppSync keep-alive once the connection is
// acknowledged, and schedules the next. A full queue skips it: the client is
// being written to anyway.
func (c *conn) keepAliveTick() {
	select {
	case <-c.closing:
		return
	default:
	}
	c.mu.Lock()
	acked := c.acked
	if c.ka != nil {
		c.ka.Reset(c.s.cfg.KeepAlive)
	}
	c.mu.Unlock()
	if acked {
		c.q.Out.Push(frameKeepAlive)
	}
}

// write sends one frame within the write deadline; false means the
// connection is gone.
func (c *conn) write(frame []byte) bool {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		c.close(websocket.CloseAbnormalClosure, "")
		c.ws.Close()
		return false
	}
	return true
}

// flush writes what was queued before the close (an error frame explaining
// it, say), all within one write deadline; a slow client's backlog is not
// waited for.
func (c *conn) flush() {
	if c.code == CloseSlow {
		return
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	for _, frame := range c.q.Out.Take() {
		if c.ws.WriteMessage(websocket.TextMessage, frame) != nil {
			return
		}
	}
}

// close starts closing the connection with a WebSocket close code; the first
// call wins.
func (c *conn) close(code int, reason string) {
	c.once.Do(func() {
		c.code, c.reason = code, reason
		close(c.closing)
		c.q.Out.Shut()
		if code == CloseSlow && c.s.cfg.OnSlow != nil {
			c.s.cfg.OnSlow()
		}
	})
}

// send queues a frame; a full queue means the client is too slow, and it is
// closed so that it reconnects and resumes.
func (c *conn) send(frame []byte) bool { return c.q.Send(frame) }

// Attached implements hub.Attacher: it acknowledges the subscription, for
// dialects that do, before any event of it is sent.
func (s *subscription) Attached() {
	if ack := s.c.dialect.ack(s.id); ack != nil {
		s.c.send(ack)
	}
}

// encode frames an event for this subscription: encoded once per shape
// for every subscriber, wrapped in this connection's dialect.
func (s *subscription) encode(sh *hub.Shared) []byte {
	data := sh.Encoded(s.shape, s.shape.Encode)
	if data == nil {
		return nil // an event this subscriber did not ask for
	}
	return s.c.dialect.frame(s.id, data)
}

// errTooManyConns refuses a principal over its connection cap.
var errTooManyConns = errors.New("too many connections for this principal")

// authenticate sets the connection's principal from the credentials of the
// init payload ({"x-api-key"}, {"apiKey"}, {"Authorization"}, or those inside
// {"headers":{…}}), or else of the upgrade request's auth object (AppSync's
// ?header= or header-… subprotocol, or plain HTTP headers). It counts the
// connection against the principal's cap and arms the close at the token's
// expiry. A malformed auth object is errAuthObject.
func (c *conn) authenticate(payload map[string]any) error {
	creds := payloadCredentials(payload)
	if creds == (auth.Credentials{}) {
		if c.reqAuthErr != nil {
			return c.reqAuthErr
		}
		creds = c.reqAuth.credentials()
	}
	p, err := c.s.policy.Authenticate(c.ctx, creds, c.addr, c.origin)
	if err != nil {
		return err
	}
	return c.admit(p)
}

// admit makes p the connection's principal: it counts the connection
// against p's cap and arms the close at the token's expiry.
func (c *conn) admit(p *auth.Principal) error {
	if err := c.lease.Admit(c.ctx, p); err != nil {
		return errTooManyConns
	}
	c.mu.Lock()
	c.principal = p
	c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop() // a second init's credentials replace the first's
	}
	c.expiry = c.s.policy.Expire(p, func() { c.close(4401, "token expired") })
	return nil
}

func payloadCredentials(payload map[string]any) auth.Credentials {
	var c auth.Credentials
	for _, name := range []string{"x-api-key", "apiKey", "X-Api-Key"} {
		if k, _ := payload[name].(string); k != "" && c.APIKey == "" {
			c.APIKey = k
		}
	}
	for _, name := range []string{"Authorization", "authorization"} {
		if k, _ := payload[name].(string); k != "" && c.Authorization == "" {
			c.Authorization = k
		}
	}
	if h, ok := payload["headers"].(map[string]any); ok && c == (auth.Credentials{}) {
		return payloadCredentials(h)
	}
	return c
}

// errOperation is a refusal of one operation, already shaped for the client.
type errOperation struct{ errs gqlerror.List }

func (e errOperation) Error() string { return e.errs.Error() }

func opError(code, message string) errOperation {
	return errOperation{gqlerror.List{{Message: message, Extensions: map[string]any{"code": code}}}}
}

// start runs an operation for id as principal p: a query or mutation
// answers once and completes, a subscription attaches to the hub. The id must
// be reserved.
func (c *conn) start(id string, params *graphql.RawParams, p *auth.Principal) {
	ctx := auth.WithClientAddr(auth.WithPrincipal(c.ctx, p), c.addr)
	op, errs := c.s.ops.Prepare(ctx, params)
	if len(errs) > 0 && chat.ErrorCode(errs[0]) == chat.CodeForbidden {
		c.finish(id)
		if _, ok := c.dialect.(transportWS); ok {
			c.close(4403, "Forbidden")
			return
		}
		c.send(c.dialect.errorFrame(id, appSyncError(errorTypeUnauthorized, "You are not authorized to make this call.", 401)))
		return
	}
	if len(errs) > 0 {
		c.finish(id)
		c.send(c.dialect.errorFrame(id, errs))
		return
	}
	if op.Subscription == nil {
		// It runs beside the reader, so the reader sees the client's
		// complete or its leaving, which end the operation's context.
		ctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		if s, ok := c.subs[id]; !ok || s != nil {
			c.mu.Unlock()
			cancel()
			return
		}
		q := &subscription{c: c, id: id, cancel: cancel}
		c.subs[id] = q
		c.mu.Unlock()
		c.queries.Go(func() {
			defer cancel()
			defer c.survive()
			c.execute(ctx, q, op)
		})
		return
	}
	c.subscribe(id, op)
}

// execute runs a query or mutation and sends its result, unless the client
// stopped it or left meanwhile.
func (c *conn) execute(ctx context.Context, q *subscription, op *graph.Operation) {
	resp := c.s.ops.Execute(ctx, op)
	c.mu.Lock()
	mine := c.subs[q.id] == q
	if mine {
		delete(c.subs, q.id)
	}
	c.mu.Unlock()
	if !mine {
		return
	}
	id := q.id
	data, err := json.Marshal(resp)
	if err != nil {
		c.send(c.dialect.errorFrame(id, gqlerror.List{{Message: "could not encode the result", Extensions: map[string]any{"code": chat.CodeInternal}}}))
		return
	}
	if len(data) > c.s.cfg.MaxResultBytes {
		c.send(c.dialect.errorFrame(id, opError(chat.CodeResultTooLarge, "the result is larger than "+strconv.Itoa(c.s.cfg.MaxResultBytes)+" bytes").errs))
		return
	}
	c.send(c.dialect.result(id, data))
	c.send(c.dialect.complete(id))
}

// subscribe attaches a subscription to the hub; its id is reserved.
func (c *conn) subscribe(id string, op *graph.Operation) {
	// The acknowledgement goes out once the subscription is live (Attached),
	// so a message published after start_ack always reaches the client.
	sub := &subscription{c: c, id: id, shape: op.Subscription.Shape}
	sub.Sink = stream.Sink{Queue: &c.q, Frame: sub.encode}
	hs, err := c.s.hub.Subscribe(c.ctx, op.Subscription.SessionID, op.Subscription.After, sub)
	if err != nil {
		c.finish(id)
		c.s.log.Error("subscribe", "session", op.Subscription.SessionID, "err", err)
		c.send(c.dialect.errorFrame(id, opError(chat.CodeUnavailable, "could not subscribe, try again").errs))
		return
	}
	c.mu.Lock()
	if s, ok := c.subs[id]; ok && s == nil {
		c.subs[id] = sub
		sub.hub = hs
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	// Stopped (or the connection closed) while subscribing.
	hs.Close()
}

// reserve claims an operation id; false if it is in use or the cap is hit.
func (c *conn) reserve(id string) (dup, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		return false, true
	}
	if _, ok := c.subs[id]; ok {
		return true, false
	}
	if len(c.subs) >= c.s.cfg.MaxSubscriptions {
		return false, true
	}
	c.subs[id] = nil
	return false, false
}

// finish releases an operation id without stopping anything.
func (c *conn) finish(id string) {
	c.mu.Lock()
	if c.subs != nil {
		delete(c.subs, id)
	}
	c.mu.Unlock()
}

// stop ends an operation at the client's request; it reports whether the id
// was in use.
func (c *conn) stop(id string) bool {
	c.mu.Lock()
	sub, ok := c.subs[id]
	if ok {
		delete(c.subs, id)
	}
	c.mu.Unlock()
	if sub != nil && sub.hub != nil {
		sub.hub.Close()
	}
	if sub != nil && sub.cancel != nil {
		sub.cancel()
	}
	return ok
}
