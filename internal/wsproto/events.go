package wsproto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/events"
)

// This file owns the AppSync Events dialect (subprotocol
// aws-appsync-event-ws, Amplify v6's events client): a subscribe is the
// session's onSendMessage subscription with every field and the agent
// events, so ownership, replay of the answer in flight and the shared
// encoding are GraphQL's; a publish is sendMessage. The channels, the
// client's messages and publishing are package events'.

// SubprotocolEvents is AppSync Events' real-time WebSocket.
const SubprotocolEvents = "aws-appsync-event-ws"

// eventsSubscription is what an Events subscriber receives: every field of
// SendMessageResponse (the GraphQL subscription's typed event), agent
// events included.
const eventsSubscription = `subscription($sessionId: String!) { onSendMessage(sessionId: $sessionId, agent: true) {
  sessionId message locale timeStamp type requestId index cursor stopReason model ttftMs
  usage { inputTokens outputTokens totalTokens reasoningTokens cacheReadTokens cacheWriteTokens }
  error { code message }
  toolCall { id name input }
  toolResult { callId name output isError truncated durationMs }
  step { number reason continues }
  source { title url text }
  approval { callId tool input approved reason expires }
} }`

// eventsDataPrefix opens the data object eventsSubscription's shape encodes.
const eventsDataPrefix = `{"onSendMessage":`

// eventsWS is the AppSync Events dialect.
type eventsWS struct {
	// maxPayload bounds an event sent to a subscriber (AppSync: 240 KB).
	maxPayload int
}

func (eventsWS) handle(c *conn, data []byte) { handleEvents(c, data) }

// frame is {"type":"data","id":…,"event":"<the event's JSON>"}: AppSync
// Events sends an event as a string of JSON. An event over the limit is
// not sent; the subscriber gets a broadcast_error in its place.
func (d eventsWS) frame(id string, data []byte) []byte {
	inner := bytes.TrimSuffix(bytes.TrimPrefix(data, []byte(eventsDataPrefix)), []byte("}"))
	if d.maxPayload > 0 && len(inner) > d.maxPayload {
		return eventsErrorFrame("broadcast_error", id, events.Refuse(events.TypeTooLarge, "an event was larger than "+strconv.Itoa(d.maxPayload)+" bytes and was not sent"))
	}
	b := make([]byte, 0, len(inner)+len(id)+64)
	b = append(b, `{"type":"data","id":`...)
	b = chat.AppendQuoted(b, id)
	b = append(b, `,"event":`...)
	b = chat.AppendQuoted(b, string(inner))
	return append(b, '}')
}

// result is never sent: an Events connection runs no query or mutation.
func (eventsWS) result(id string, _ []byte) []byte {
	return eventsErrorFrame("error", id, events.Refuse(events.TypeUnsupported, "not an Events operation"))
}

// errorFrame refuses a subscribe: {"type":"subscribe_error","id":…,
// "errors":[{errorType, message}]}. A GraphQL refusal's code is its
// errorType.
func (eventsWS) errorFrame(id string, errs gqlerror.List) []byte {
	out := make([]events.ErrorObject, 0, len(errs))
	for _, e := range errs {
		typ, _ := e.Extensions["errorType"].(string)
		if typ == "" {
			typ, _ = e.Extensions["code"].(string)
		}
		out = append(out, events.ErrorObject{ErrorType: typ, Message: e.Message})
	}
	return eventsFrame(map[string]any{"type": "subscribe_error", "id": id, "errors": out})
}

func (eventsWS) complete(id string) []byte {
	return eventsFrame(map[string]any{"type": "unsubscribe_success", "id": id})
}

func (eventsWS) ack(id string) []byte {
	return eventsFrame(map[string]any{"type": "subscribe_success", "id": id})
}

func eventsFrame(m map[string]any) []byte {
	b, _ := json.Marshal(m)
	return b
}

// eventsErrorFrame is a message of type typ for id (none when empty)
// carrying e in AppSync's errors list.
func eventsErrorFrame(typ, id string, e *events.Error) []byte {
	m := events.Errors(e)
	m["type"] = typ
	if id != "" {
		m["id"] = id
	}
	return eventsFrame(m)
}

// eventsConnectionAck is the Events connection_ack: connectionTimeoutMs is
// a field of the message itself, not of a payload as in the GraphQL
// dialect.
func eventsConnectionAck(timeoutMs int64) []byte {
	return []byte(`{"type":"connection_ack","connectionTimeoutMs":` + strconv.FormatInt(timeoutMs, 10) + `}`)
}

func handleEvents(c *conn, data []byte) {
	msg, err := events.DecodeMessage(data)
	if err != nil {
		refused := events.Refuse(events.TypeBadRequest, err.Error())
		switch msg.Type {
		case "subscribe", "publish":
			c.send(eventsErrorFrame(msg.Type+"_error", msg.ID, refused))
		default:
			c.send(eventsErrorFrame("error", msg.ID, refused))
		}
		return
	}
	switch msg.Type {
	case "connection_init":
		eventsInit(c)
	case "subscribe":
		eventsSubscribe(c, msg)
	case "publish":
		eventsPublish(c, msg)
	case "unsubscribe":
		if c.stop(msg.ID) {
			c.send(c.dialect.complete(msg.ID))
			return
		}
		c.send(eventsErrorFrame("unsubscribe_error", msg.ID, events.Refuse(events.TypeBadRequest, "no subscription has id "+strconv.Quote(msg.ID))))
	default:
		c.send(eventsErrorFrame("error", msg.ID, events.Refuse(events.TypeUnsupported, "unsupported message type "+strconv.Quote(msg.Type))))
	}
}

// eventsInit authenticates the connection by its upgrade's auth object
// (the header-… subprotocol): connection_init carries none.
func eventsInit(c *conn) {
	refuse := func(e *events.Error) {
		m := events.Errors(e)
		m["type"] = "connection_error"
		c.send(eventsFrame(m))
		c.close(4403, "Forbidden")
	}
	if c.reqAuthErr != nil {
		refuse(events.Refuse(events.TypeBadRequest, c.reqAuthErr.Error()))
		return
	}
	p, err := c.principalOf(c.reqAuth, []byte("{}"))
	if err == nil {
		err = c.admit(p)
	}
	if err != nil {
		refuse(events.Refuse(events.TypeUnauthorized, "You are not authorized to make this call."))
		return
	}
	c.mu.Lock()
	c.acked = true
	c.mu.Unlock()
	c.send(eventsConnectionAck(c.s.cfg.ConnectionTimeout.Milliseconds()))
	c.send(frameKeepAlive)
}

// eventsCaller is the principal of a subscribe or publish: its own
// authorization object when it carries credentials (AppSync authorizes each
// one), else the connection's; signed is the body a SigV4 signature of the
// object covers. It has answered with typ's error when ok is false.
func eventsCaller(c *conn, msg events.Message, typ string, signed func() []byte) (p *auth.Principal, ok bool) {
	c.mu.Lock()
	acked, p := c.acked, c.principal
	c.mu.Unlock()
	refuse := func(e *events.Error) (*auth.Principal, bool) {
		c.send(eventsErrorFrame(typ, msg.ID, e))
		return nil, false
	}
	switch {
	case !acked:
		return refuse(events.Refuse(events.TypeUnauthorized, "send connection_init first"))
	case msg.ID == "":
		return refuse(events.Refuse(events.TypeBadRequest, msg.Type+" needs an id"))
	}
	if obj := authObjectFrom(msg.Authorization); obj.credentials() != (auth.Credentials{}) {
		var err error
		if p, err = c.principalOf(obj, signed()); err != nil {
			return refuse(events.Refuse(events.TypeUnauthorized, "You are not authorized to make this call."))
		}
	}
	return p, true
}

func eventsSubscribe(c *conn, msg events.Message) {
	p, ok := eventsCaller(c, msg, "subscribe_error", func() []byte { return signedBody(map[string]any{"channel": msg.Channel}) })
	if !ok {
		return
	}
	session, _, err := events.ParseChannel(msg.Channel)
	if err != nil {
		typ := events.TypeBadRequest
		if errors.Is(err, events.ErrWildcard) {
			typ = events.TypeUnauthorized
		}
		c.send(eventsErrorFrame("subscribe_error", msg.ID, events.Refuse(typ, err.Error())))
		return
	}
	dup, full := c.reserve(msg.ID)
	if dup {
		c.send(eventsErrorFrame("subscribe_error", msg.ID, events.Refuse(events.TypeDuplicate, "a subscription with id "+strconv.Quote(msg.ID)+" is already running")))
		return
	}
	if full {
		c.send(eventsErrorFrame("subscribe_error", msg.ID, events.Refuse(events.TypeTooMany, "this connection has "+strconv.Itoa(c.s.cfg.MaxSubscriptions)+" subscriptions, the most it may have")))
		return
	}
	c.start(msg.ID, &graphql.RawParams{Query: eventsSubscription, Variables: map[string]any{"sessionId": session}}, p)
}

func eventsPublish(c *conn, msg events.Message) {
	p, ok := eventsCaller(c, msg, "publish_error", func() []byte {
		return signedBody(map[string]any{"channel": msg.Channel, "events": msg.Events})
	})
	if !ok {
		return
	}
	if c.s.cfg.Publish == nil {
		c.send(eventsErrorFrame("publish_error", msg.ID, events.Refuse(events.TypeUnsupported, "this server does not publish")))
		return
	}
	ctx := auth.WithClientAddr(auth.WithPrincipal(c.ctx, p), c.addr)
	res, err := events.Publish(ctx, c.s.cfg.Publish, msg.Channel, msg.Events)
	if err != nil {
		e, isRefusal := errors.AsType[*events.Error](err)
		if !isRefusal {
			e = events.Refuse(events.TypeInternal, "could not publish, try again")
		}
		c.send(eventsErrorFrame("publish_error", msg.ID, e))
		return
	}
	c.send(eventsFrame(map[string]any{"type": "publish_success", "id": msg.ID, "successful": res.Successful, "failed": res.Failed}))
}

// signedBody is the JSON Amplify signs for a subscribe or publish: its
// fields in that order, without HTML escaping, as JSON.stringify writes.
func signedBody(v map[string]any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, k := range []string{"channel", "events"} {
		val, ok := v[k]
		if !ok {
			continue
		}
		if i > 0 {
			b.WriteByte(',')
		}
		_ = enc.Encode(k)
		b.WriteByte(':')
		_ = enc.Encode(val)
	}
	b.WriteByte('}')
	return bytes.ReplaceAll(b.Bytes(), []byte("\n"), nil)
}

// principalOf finds the principal of an auth object: by its SigV4
// signature over a POST of body to https://<host>/event (how Amplify signs
// for AppSync Events), else by its API key or bearer token.
func (c *conn) principalOf(obj authObject, body []byte) (*auth.Principal, error) {
	if !strings.HasPrefix(obj["authorization"], "AWS4-HMAC-SHA256 ") {
		return c.s.policy.Authenticate(c.ctx, obj.credentials(), c.addr, c.origin)
	}
	refuse := func(err error) (*auth.Principal, error) {
		c.s.policy.Refusals().Credentials(c.ctx, c.addr, c.origin, err, "TOKENCAST_SIGV4_KEYS")
		return nil, err
	}
	if c.s.cfg.SigV4 == nil {
		return refuse(errors.New("a SigV4 signature, and no access keys are configured"))
	}
	r, err := http.NewRequestWithContext(c.ctx, http.MethodPost, "https://"+obj["host"]+"/event", bytes.NewReader(body))
	if err != nil {
		return refuse(err)
	}
	for k, v := range obj {
		if k != "host" {
			r.Header.Set(k, v)
		}
	}
	p, err := c.s.cfg.SigV4.Verify(c.ctx, r, body)
	if err != nil {
		return refuse(err)
	}
	return p, nil
}

// SignatureVerifier checks SigV4-signed requests (auth.SigV4).
type SignatureVerifier interface {
	Verify(ctx context.Context, r *http.Request, body []byte) (*auth.Principal, error)
}
