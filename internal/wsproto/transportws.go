package wsproto

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/chat"
)

// transportWS is graphql-transport-ws (enisdenjo/graphql-ws PROTOCOL.md).
type transportWS struct{}

type transportMsg struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// decodeTransport decodes one client frame; ok is false for anything that
// is not a JSON object with a string type.
func decodeTransport(data []byte) (msg transportMsg, ok bool) {
	if err := json.Unmarshal(data, &msg); err != nil || msg.Type == "" {
		return transportMsg{}, false
	}
	return msg, true
}

// decodeSubscribe reads a subscribe message's id and payload; ok is false
// when either is missing or the payload has no query.
func decodeSubscribe(msg transportMsg) (params graphql.RawParams, ok bool) {
	if msg.ID == "" || json.Unmarshal(msg.Payload, &params) != nil || params.Query == "" {
		return graphql.RawParams{}, false
	}
	return params, true
}

func (transportWS) handle(c *conn, data []byte) {
	msg, ok := decodeTransport(data)
	if !ok {
		c.close(4400, "Invalid message received")
		return
	}
	switch msg.Type {
	case "connection_init":
		c.mu.Lock()
		c.inits++
		first := c.inits == 1
		c.mu.Unlock()
		if !first {
			c.close(4429, "Too many initialisation requests")
			return
		}
		var payload map[string]any
		if len(msg.Payload) > 0 && string(msg.Payload) != "null" {
			if err := json.Unmarshal(msg.Payload, &payload); err != nil {
				c.close(4400, "Invalid connection_init payload")
				return
			}
		}
		if err := c.authenticate(payload); errors.Is(err, errTooManyConns) {
			c.close(4429, "Too many connections")
			return
		} else if err != nil {
			c.close(4403, "Forbidden")
			return
		}
		c.mu.Lock()
		c.acked = true
		c.mu.Unlock()
		c.send([]byte(`{"type":"connection_ack"}`))
	case "ping":
		c.send([]byte(`{"type":"pong"}`))
	case "pong":
	case "subscribe":
		c.mu.Lock()
		acked := c.acked
		c.mu.Unlock()
		if !acked {
			c.close(4401, "Unauthorized")
			return
		}
		params, ok := decodeSubscribe(msg)
		if !ok {
			c.close(4400, "Invalid subscribe message")
			return
		}
		dup, full := c.reserve(msg.ID)
		if dup {
			c.close(4409, "Subscriber for "+msg.ID+" already exists")
			return
		}
		if full {
			c.send(transportWS{}.errorFrame(msg.ID, opError("TOO_MANY_SUBSCRIPTIONS", "this connection has too many subscriptions").errs))
			return
		}
		c.mu.Lock()
		p := c.principal
		c.mu.Unlock()
		c.start(msg.ID, &params, p)
	case "complete":
		c.stop(msg.ID)
	default:
		c.close(4400, "Invalid message type "+strconv.Quote(msg.Type))
	}
}

func (transportWS) frame(id string, data []byte) []byte {
	b := make([]byte, 0, len(id)+len(data)+48)
	b = append(b, `{"id":`...)
	b = chat.AppendQuoted(b, id)
	b = append(b, `,"type":"next","payload":{"data":`...)
	b = append(b, data...)
	return append(b, "}}"...)
}

func (transportWS) result(id string, payload []byte) []byte {
	b := make([]byte, 0, len(id)+len(payload)+40)
	b = append(b, `{"id":`...)
	b = chat.AppendQuoted(b, id)
	b = append(b, `,"type":"next","payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func (transportWS) errorFrame(id string, errs gqlerror.List) []byte {
	payload, _ := json.Marshal(errs)
	b := make([]byte, 0, len(id)+len(payload)+40)
	b = append(b, `{"id":`...)
	b = chat.AppendQuoted(b, id)
	b = append(b, `,"type":"error","payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func (transportWS) ack(string) []byte { return nil }

func (transportWS) complete(id string) []byte {
	b := chat.AppendQuoted([]byte(`{"id":`), id)
	return append(b, `,"type":"complete"}`...)
}
