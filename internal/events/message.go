package events

import (
	"encoding/json"
	"errors"
)

// This file owns the client's messages on the real-time WebSocket
// (subprotocol aws-appsync-event-ws), as Amplify v6's events client sends
// them: connection_init, subscribe, publish, unsubscribe.

// Message is one client message. Amplify also sends a payload object
// repeating channel, events and authorization for older servers; it is
// not read.
type Message struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Channel string `json:"channel"`
	// Events are a publish's events, each a JSON value as a string.
	Events []string `json:"events"`
	// Authorization authorizes this one subscribe or publish (the
	// header-… subprotocol's object: host, x-api-key, Authorization or
	// SigV4 headers); nil when absent.
	Authorization map[string]json.RawMessage `json:"authorization"`
}

// ErrInvalidMessage refuses a frame that is not a client message.
var ErrInvalidMessage = errors.New("invalid message: want a JSON object with a string type; events are strings of JSON")

// maxIDLen bounds a subscription or publish id (Amplify sends UUIDs).
const maxIDLen = 128

// DecodeMessage reads one client frame. When the frame has a type and an id
// but a field of the wrong shape, the message returned with the error
// still carries them, so the refusal can name the operation.
func DecodeMessage(data []byte) (Message, error) {
	var msg Message
	if err := json.Unmarshal(data, &msg); err != nil || msg.Type == "" {
		var head struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		_ = json.Unmarshal(data, &head)
		if len(head.ID) > maxIDLen {
			head.ID = ""
		}
		return Message{Type: head.Type, ID: head.ID}, ErrInvalidMessage
	}
	if len(msg.ID) > maxIDLen {
		return Message{Type: msg.Type}, errors.New("an id is at most 128 characters")
	}
	return msg, nil
}

// PublishBody is the body of an HTTP publish: POST /event.
type PublishBody struct {
	Channel string   `json:"channel"`
	Events  []string `json:"events"`
}
