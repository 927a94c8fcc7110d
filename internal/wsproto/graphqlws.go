package wsproto

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
)

// The graphql-ws subprotocol is spoken by two protocols: the AppSync
// real-time dialect (AWS doc "Building a real-time WebSocket client in AWS
// AppSync"; Amplify, aws-appsync-subscription-link) and the legacy Apollo
// subscriptions-transport-ws. They share connection_init, connection_ack,
// ka, data, error, stop and complete; a start tells them apart: AppSync sends
// payload.data as a JSON string, Apollo sends payload.query. A connection is
// AppSync until its first start says otherwise.

// gwsMessage is a client message of the graphql-ws subprotocol.
type gwsMessage struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

var errInvalidMessage = errors.New("invalid message: want a JSON object with a string type")

// decodeGWS decodes one client frame.
func decodeGWS(data []byte) (gwsMessage, error) {
	var msg gwsMessage
	if err := json.Unmarshal(data, &msg); err != nil || msg.Type == "" {
		return gwsMessage{}, errInvalidMessage
	}
	return msg, nil
}

// gwsStart is a decoded start payload.
type gwsStart struct {
	params graphql.RawParams
	// appSync is set when payload.data was a JSON string.
	appSync bool
	// auth is AppSync's extensions.authorization; nil when absent.
	auth authObject
}

var errInvalidStart = errors.New("invalid start payload: want data as a JSON string (AppSync) or a query (Apollo)")

// decodeStart reads a start payload of either flavour.
func decodeStart(payload json.RawMessage) (gwsStart, error) {
	var p struct {
		Data          json.RawMessage `json:"data"`
		Query         string          `json:"query"`
		Variables     map[string]any  `json:"variables"`
		OperationName string          `json:"operationName"`
		Extensions    json.RawMessage `json:"extensions"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return gwsStart{}, errInvalidStart
	}
	var ext map[string]json.RawMessage
	_ = json.Unmarshal(p.Extensions, &ext)
	var dataString string
	if len(p.Data) > 0 && json.Unmarshal(p.Data, &dataString) == nil {
		st := gwsStart{appSync: true}
		if err := json.Unmarshal([]byte(dataString), &st.params); err != nil || st.params.Query == "" {
			return gwsStart{appSync: true}, errInvalidStart
		}
		var auth map[string]json.RawMessage
		if json.Unmarshal(ext["authorization"], &auth) == nil && auth != nil {
			st.auth = authObjectFrom(auth)
		}
		return st, nil
	}
	if p.Query == "" {
		return gwsStart{}, errInvalidStart
	}
	var extensions map[string]any
	_ = json.Unmarshal(p.Extensions, &extensions)
	return gwsStart{params: graphql.RawParams{Query: p.Query, Variables: p.Variables, OperationName: p.OperationName, Extensions: extensions}}, nil
}

// AppSync error types the clients recognise (Amplify treats
// BadRequestException and UnauthorizedException as final).
const (
	errorTypeBadRequest   = "BadRequestException"
	errorTypeUnauthorized = "UnauthorizedException"
	errorTypeUnsupported  = "UnsupportedOperation"
	errorTypeTooMany      = "MaxSubscriptionsReachedError"
	errorTypeDuplicate    = "DuplicatedOperationError"
	errorTypeTooLarge     = "PayloadTooLargeException"
)

// appSyncError is a GraphQL error refused in AppSync's words.
func appSyncError(errorType, message string, errorCode int) gqlerror.List {
	ext := map[string]any{"errorType": errorType}
	if errorCode != 0 {
		ext["errorCode"] = errorCode
	}
	return gqlerror.List{{Message: message, Extensions: ext}}
}

func handleGraphQLWS(c *conn, data []byte) {
	msg, err := decodeGWS(data)
	if err != nil {
		c.send(c.dialect.errorFrame("", appSyncError(errorTypeBadRequest, err.Error(), 400)))
		return
	}
	switch msg.Type {
	case "connection_init":
		var payload map[string]any
		_ = json.Unmarshal(msg.Payload, &payload)
		if err := c.authenticate(payload); err != nil {
			code, typ, text := 401, errorTypeUnauthorized, "You are not authorized to make this call."
			if errors.Is(err, errAuthObject) {
				code, typ, text = 400, errorTypeBadRequest, err.Error()
			}
			c.send(connectionError(typ, text, code))
			c.close(4403, "Forbidden")
			return
		}
		c.mu.Lock()
		c.acked = true
		c.mu.Unlock()
		c.send(c.s.connectionAck)
		c.send(frameKeepAlive)
	case "start":
		gwsStartOperation(c, msg)
	case "stop":
		c.stop(msg.ID)
		c.send(c.dialect.complete(msg.ID))
	case "connection_terminate":
		c.close(1000, "")
	default:
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeUnsupported, "unsupported message type "+strconv.Quote(msg.Type), 400)))
	}
}

func gwsStartOperation(c *conn, msg gwsMessage) {
	st, err := decodeStart(msg.Payload)
	if !c.flavourKnown {
		// The first start decides; before it, replies are AppSync's.
		c.flavourKnown = true
		if err == nil && !st.appSync {
			c.dialect = legacyWS{}
		}
	}
	c.mu.Lock()
	acked, p := c.acked, c.principal
	c.mu.Unlock()
	switch {
	case !acked:
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeUnauthorized, "send connection_init first", 401)))
		return
	case msg.ID == "":
		c.send(c.dialect.errorFrame("", appSyncError(errorTypeBadRequest, "start needs an id", 400)))
		return
	case len(msg.Payload) > c.s.cfg.MaxPayload:
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeTooLarge, "the subscription payload is larger than "+strconv.Itoa(c.s.cfg.MaxPayload)+" bytes", 400)))
		return
	case err != nil:
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeBadRequest, err.Error(), 400)))
		return
	}
	if creds := st.auth.credentials(); creds != (auth.Credentials{}) {
		// AppSync authorizes each subscription with its own auth object.
		if p, err = c.s.policy.Authenticate(c.ctx, creds, c.addr, c.origin); err != nil {
			c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeUnauthorized, "You are not authorized to make this call.", 401)))
			return
		}
	}
	dup, full := c.reserve(msg.ID)
	if dup {
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeDuplicate, "an operation with id "+strconv.Quote(msg.ID)+" is already running", 400)))
		return
	}
	if full {
		c.send(c.dialect.errorFrame(msg.ID, appSyncError(errorTypeTooMany, "this connection has "+strconv.Itoa(c.s.cfg.MaxSubscriptions)+" subscriptions, the most it may have", 400)))
		return
	}
	c.start(msg.ID, &st.params, p)
}

var frameKeepAlive = []byte(`{"type":"ka"}`)

func connectionAck(timeoutMs int64) []byte {
	return []byte(`{"type":"connection_ack","payload":{"connectionTimeoutMs":` + strconv.FormatInt(timeoutMs, 10) + `}}`)
}

func connectionError(errorType, message string, errorCode int) []byte {
	b, _ := json.Marshal(map[string]any{
		"type":    "connection_error",
		"payload": map[string]any{"errors": []map[string]any{{"errorType": errorType, "message": message, "errorCode": errorCode}}},
	})
	return b
}

// dataFrame is {"type":"data","id":…,"payload":payload}, shared by both
// flavours.
func dataFrame(id string, payload []byte) []byte {
	b := make([]byte, 0, len(id)+len(payload)+40)
	b = append(b, `{"type":"data","id":`...)
	b = chat.AppendQuoted(b, id)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func completeFrame(id string) []byte {
	b := chat.AppendQuoted([]byte(`{"type":"complete","id":`), id)
	return append(b, '}')
}

// appSync is the AppSync real-time dialect.
type appSync struct {
	// maxPayload bounds an event's data object, as AppSync's 240 KB limit.
	maxPayload int
}

func (appSync) handle(c *conn, data []byte) { handleGraphQLWS(c, data) }

func (d appSync) frame(id string, data []byte) []byte {
	if d.maxPayload > 0 && len(data) > d.maxPayload {
		return d.errorFrame(id, appSyncError(errorTypeTooLarge, "an event was larger than "+strconv.Itoa(d.maxPayload)+" bytes and was not sent", 400))
	}
	b := make([]byte, 0, len(data)+16)
	b = append(b, `{"data":`...)
	b = append(b, data...)
	return dataFrame(id, append(b, '}'))
}

func (appSync) result(id string, payload []byte) []byte { return dataFrame(id, payload) }

func (appSync) ack(id string) []byte {
	b := chat.AppendQuoted([]byte(`{"type":"start_ack","id":`), id)
	return append(b, '}')
}

func (appSync) complete(id string) []byte { return completeFrame(id) }

// errorFrame is {"type":"error","id":…,"payload":{"errors":[{errorType,
// message, errorCode?}]}}.
func (appSync) errorFrame(id string, errs gqlerror.List) []byte {
	type appSyncErr struct {
		ErrorType string `json:"errorType"`
		Message   string `json:"message"`
		ErrorCode int    `json:"errorCode,omitempty"`
	}
	out := make([]appSyncErr, 0, len(errs))
	for _, e := range errs {
		ae := appSyncErr{ErrorType: "GraphQLError", Message: e.Message}
		if t, ok := e.Extensions["errorType"].(string); ok {
			ae.ErrorType = t
		} else if code, ok := e.Extensions["code"].(string); ok {
			ae.ErrorType = code
		}
		ae.ErrorCode, _ = e.Extensions["errorCode"].(int)
		out = append(out, ae)
	}
	return errorMessage(id, map[string]any{"errors": out})
}

func errorMessage(id string, payload any) []byte {
	m := map[string]any{"type": "error", "payload": payload}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return b
}

// legacyWS is Apollo's subscriptions-transport-ws.
type legacyWS struct{}

func (legacyWS) handle(c *conn, data []byte) { handleGraphQLWS(c, data) }

func (legacyWS) frame(id string, data []byte) []byte { return appSync{}.frame(id, data) }

func (legacyWS) result(id string, payload []byte) []byte { return dataFrame(id, payload) }

// ack is nil: the legacy client throws on message types it does not know.
func (legacyWS) ack(string) []byte { return nil }

func (legacyWS) complete(id string) []byte { return completeFrame(id) }

// errorFrame carries the errors both as the protocol's Error object
// (message) and as a list, which the client's formatErrors prefers.
func (legacyWS) errorFrame(id string, errs gqlerror.List) []byte {
	msg := "error"
	if len(errs) > 0 {
		msg = errs[0].Message
	}
	return errorMessage(id, map[string]any{"message": msg, "errors": errs})
}
