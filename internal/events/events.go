// Package events is AWS AppSync Events as Amplify v6's events client speaks
// it, served from a session's durable event log: a session's events are the
// channel /tokencast/sessions/<sessionId>, a service principal publishes
// into it (as sendMessage does) over the real-time WebSocket or with POST
// /event. This package owns the channels, the client's messages, what a
// subscriber receives and publishing; the WebSocket itself is a dialect of
// the connection engine (wsproto), so its limits, principals and caps are
// those of every other WebSocket. AppSync Events has no replay: a
// subscriber that joins mid-answer gets the answer in flight from its
// START, as a GraphQL subscriber does.
package events

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

// Handler answers POST /event, AppSync Events' HTTP publish. The gateway
// hands it requests whose caller is authenticated (an API key, a bearer
// token or a SigV4 signature) and whose body is one bounded JSON object.
type Handler struct {
	send Sender
	log  *slog.Logger
}

// NewHandler returns the HTTP publish endpoint, publishing through send.
func NewHandler(send Sender, log *slog.Logger) *Handler {
	return &Handler{send: send, log: log}
}

// ServeHTTP publishes {"channel": …, "events": […]} and answers AppSync's
// {"successful": […], "failed": […]}, or {"errors": [{errorType, message}]}
// with the refusal's status.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body PublishBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeRefusal(w, Refuse(TypeBadRequest, `the body is {"channel": "/`+Namespace+`/sessions/<sessionId>", "events": ["<JSON>", …]}; events are strings of JSON`))
		return
	}
	res, err := Publish(r.Context(), h.send, body.Channel, body.Events)
	if err != nil {
		writeRefusal(w, refusal(err))
		return
	}
	if len(res.Failed) > 0 {
		h.log.Debug("events: publish had failed events", "channel", body.Channel, "failed", len(res.Failed))
	}
	writeJSON(w, http.StatusOK, res)
}

// refusal is err as an *Error: a refusal of Publish as it is, anything
// else an internal failure.
func refusal(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return Refuse(TypeInternal, "could not publish, try again")
}

// ErrorObject is one error of an errors list, as AppSync sends it.
type ErrorObject struct {
	ErrorType string `json:"errorType"`
	Message   string `json:"message"`
}

// Errors is {"errors": [e]}.
func Errors(e *Error) map[string]any {
	return map[string]any{"errors": []ErrorObject{{ErrorType: e.Type, Message: e.Message}}}
}

// writeRefusal answers e with its status, its type also in
// X-Amzn-ErrorType, where AWS clients (Amplify's REST client) read the
// name of a service's error.
func writeRefusal(w http.ResponseWriter, e *Error) {
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	writeJSON(w, e.Status, Errors(e))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
