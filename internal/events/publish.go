package events

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
	"github.com/tokencast/tokencast/internal/graph/model"
)

// This file owns publishing: a batch of events sent to a session's channel,
// each a message a service publishes into the session as sendMessage does,
// and AppSync's answer of which were published and which failed.

// MaxEvents bounds the events of one publish, as AppSync does.
const MaxEvents = 5

// MaxEventBytes bounds one event, as AppSync does (240 KB).
const MaxEventBytes = 240 << 10

// Sender publishes a message into a session as sendMessage does
// (graph.Resolver): a service principal's only, checked again there.
type Sender interface {
	Send(ctx context.Context, input model.SendMessageInput) error
}

// Published is an event that was published.
type Published struct {
	Identifier string `json:"identifier"`
	Index      int    `json:"index"`
}

// Failed is an event that was not, and why.
type Failed struct {
	Identifier string `json:"identifier"`
	Index      int    `json:"index"`
	Code       int    `json:"code"`
	Message    string `json:"message"`
}

// Result is AppSync's answer to a publish: every event is in one list.
type Result struct {
	Successful []Published `json:"successful"`
	Failed     []Failed    `json:"failed"`
}

// Error refuses a whole publish or subscription in AppSync's words.
type Error struct {
	// Type is AppSync's errorType (UnauthorizedException, …).
	Type    string
	Message string
	// Status is the HTTP status of the refusal.
	Status int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// AppSync's error types, as Amplify recognises them (an UnauthorizedException
// is final: the client does not retry with the same credentials).
const (
	TypeBadRequest   = "BadRequestException"
	TypeUnauthorized = "UnauthorizedException"
	TypeUnsupported  = "UnsupportedOperation"
	TypeTooMany      = "MaxSubscriptionsReachedError"
	TypeDuplicate    = "DuplicatedOperationError"
	TypeTooLarge     = "PayloadTooLargeException"
	TypeInternal     = "InternalFailureException"
	TypeUnavailable  = "ServiceUnavailableException"
)

// Refuse is an *Error of type typ, its status the one AppSync uses for it.
func Refuse(typ, message string) *Error {
	status := 400
	switch typ {
	case TypeUnauthorized:
		status = 401
	case TypeTooLarge:
		status = 413
	case TypeInternal:
		status = 500
	case TypeUnavailable:
		status = 503
	}
	return &Error{Type: typ, Message: message, Status: status}
}

// Publish sends events (each a JSON value, as a string) to channel for
// the caller in ctx, who must be a service. A batch that cannot be
// published at all is an *Error; an event that cannot is listed in the
// result's failed, the others are published in order.
func Publish(ctx context.Context, s Sender, channel string, events []string) (Result, error) {
	session, wildcard, err := ParseChannel(channel)
	switch {
	case wildcard:
		return Result{}, Refuse(TypeBadRequest, ErrPublishWildcard.Error())
	case err != nil:
		return Result{}, Refuse(TypeBadRequest, err.Error())
	case len(events) == 0:
		return Result{}, Refuse(TypeBadRequest, "a publish carries 1 to "+strconv.Itoa(MaxEvents)+" events")
	case len(events) > MaxEvents:
		return Result{}, Refuse(TypeBadRequest, "a publish carries at most "+strconv.Itoa(MaxEvents)+" events, this one "+strconv.Itoa(len(events)))
	case !auth.FromContext(ctx).IsService():
		return Result{}, Refuse(TypeUnauthorized, "publishing into a session needs a service key")
	}
	res := Result{Successful: []Published{}, Failed: []Failed{}}
	for i, ev := range events {
		id := identifier()
		input, err := decodeEvent(session, ev)
		if err == nil {
			err = s.Send(ctx, input)
		}
		if err != nil {
			code, msg := failure(err)
			res.Failed = append(res.Failed, Failed{Identifier: id, Index: i, Code: code, Message: msg})
			continue
		}
		res.Successful = append(res.Successful, Published{Identifier: id, Index: i})
	}
	return res, nil
}

// eventError is an event a client sent that cannot be published.
type eventError struct {
	status int
	msg    string
}

func (e *eventError) Error() string { return e.msg }

// decodeEvent reads one published event: a JSON string is the message; a
// JSON object gives "message" (a string) and, optionally, "locale".
func decodeEvent(session, ev string) (model.SendMessageInput, error) {
	if len(ev) > MaxEventBytes {
		return model.SendMessageInput{}, &eventError{413, "the event is larger than " + strconv.Itoa(MaxEventBytes) + " bytes"}
	}
	input := model.SendMessageInput{SessionID: session, Locale: "en"}
	var text string
	if json.Unmarshal([]byte(ev), &text) == nil {
		input.Message = text
		return input, nil
	}
	var obj struct {
		Message *string `json:"message"`
		Locale  string  `json:"locale"`
	}
	if err := json.Unmarshal([]byte(ev), &obj); err != nil || obj.Message == nil {
		return model.SendMessageInput{}, &eventError{400, `an event is a JSON string (the message) or {"message": "…", "locale": "…"}`}
	}
	input.Message = *obj.Message
	if obj.Locale != "" {
		input.Locale = obj.Locale
	}
	return input, nil
}

// failure is a failed event's code and message: the client's mistake, or
// the resolver's stable code and safe message.
func failure(err error) (int, string) {
	if e, ok := errors.AsType[*eventError](err); ok {
		return e.status, e.msg
	}
	return graph.HTTPStatus(chat.ErrorCode(err)), chat.ErrorCode(err) + ": " + chat.ErrorMessage(err)
}

// identifier names a published event, as AppSync's UUIDs do.
func identifier() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
