package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// This file owns the AppSync Events dialect of the bench: Amplify v6's
// events client's protocol on /event/realtime, a session's channel
// /tokencast/sessions/<sessionId>.

// DialectEvents is AppSync Events (subprotocol aws-appsync-event-ws).
const DialectEvents = "events"

type eventsDialect struct {
	url    string
	header string // the header-… subprotocol carrying the auth object
}

func newEvents(graphqlURL, apiKey string) (*eventsDialect, error) {
	u, err := url.Parse(wsURL(graphqlURL))
	if err != nil {
		return nil, fmt.Errorf("dialect events: %w", err)
	}
	auth := map[string]string{"host": u.Host}
	if apiKey != "" {
		auth["x-api-key"] = apiKey
	}
	obj, _ := json.Marshal(auth)
	u.Path = "/event/realtime"
	return &eventsDialect{url: u.String(), header: "header-" + base64.RawURLEncoding.EncodeToString(obj)}, nil
}

type eventsFrame struct {
	Type  string `json:"type"`
	Event string `json:"event"`
}

func (d *eventsDialect) Subscribe(ctx context.Context, session string) (Subscriber, error) {
	conn, err := dialAWS(ctx, "events", d.url, "aws-appsync-event-ws, "+d.header)
	if err != nil {
		return nil, err
	}
	if err := conn.WriteJSON(map[string]string{"type": "subscribe", "id": "1", "channel": "/tokencast/sessions/" + session}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// subscribe_success: the subscription is live.
	if err := expectFrame(conn, "subscribe_success"); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &eventsSubscriber{conn: conn}, nil
}

type eventsSubscriber struct{ conn *websocket.Conn }

func (s *eventsSubscriber) Next() ([]Event, error) {
	_, data, err := s.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f eventsFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid frame %q: %w", data, err)
	}
	switch {
	case f.Type == "data":
		var ev Event
		if err := json.Unmarshal([]byte(f.Event), &ev); err != nil {
			return nil, fmt.Errorf("data whose event is not a string of JSON: %s", data)
		}
		return []Event{ev}, nil
	case strings.HasSuffix(f.Type, "error"):
		return nil, fmt.Errorf("subscription failed: %s", data)
	}
	return nil, nil
}

func (s *eventsSubscriber) Close() error { return s.conn.Close() }
