package graph

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tokencast/tokencast/internal/chat"
)

// post is GraphQL over HTTP POST with a JSON body. GET, form and multipart
// bodies are not served: a cross-site page could send them without a CORS
// preflight.
var post = transport.POST{}

// ServeHTTP answers a GraphQL request POSTed as JSON with one result, on the
// executor every other transport uses. The caller has checked the request's
// method, body and credentials.
func (o *Operations) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A panic outside the resolvers (which the executor recovers) still
	// gets a safe answer, as gqlgen's own handler gives one.
	defer func() {
		if p := recover(); p != nil {
			WriteErrors(w, http.StatusInternalServerError, gqlerror.List{o.presentPanic(r.Context(), p)})
		}
	}()
	if !post.Supports(r) {
		WriteErrors(w, http.StatusBadRequest, gqlerror.List{{Message: "transport not supported"}})
		return
	}
	post.Do(w, r.WithContext(graphql.StartOperationTrace(r.Context())), o.exec)
}

// WriteErrors answers an HTTP request with a GraphQL error response.
func WriteErrors(w http.ResponseWriter, status int, errs gqlerror.List) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

// WriteError answers a plain HTTP endpoint's request (the AI SDK's, AG-UI's)
// with err as GraphQL shows it: its code and safe message (INTERNAL and a
// generic message for an error not made for clients), with the status its
// code calls for and, when rate limited, Retry-After.
func WriteError(w http.ResponseWriter, err error) {
	gerr, ok := errors.AsType[*gqlerror.Error](err)
	if !ok {
		gerr = Refusal(chat.ErrorCode(err), chat.ErrorMessage(err))[0]
	}
	out := *gerr
	out.Path = nil
	if retry, ok := out.Extensions["retryAfter"].(int); ok {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	WriteErrors(w, HTTPStatus(chat.ErrorCode(err)), gqlerror.List{&out})
}

// HTTPStatus is the status a plain HTTP endpoint answers an error's code
// with (a GraphQL POST answers 200 with the code in extensions).
func HTTPStatus(code string) int {
	switch code {
	case chat.CodeUnauthenticated:
		return http.StatusUnauthorized
	case chat.CodeForbidden:
		return http.StatusForbidden
	case chat.CodeNotFound:
		return http.StatusNotFound
	case chat.CodeRateLimited, chat.CodeTooManyConnections:
		return http.StatusTooManyRequests
	case chat.CodeMessageTooLarge:
		return http.StatusRequestEntityTooLarge
	case chat.CodeBadInput, chat.CodeEmptyMessage, chat.CodeBadSessionID, chat.CodeBadLocale, chat.CodeBadRequestID,
		chat.CodeBadCursor, chat.CodeUnknownModel, chat.CodeApprovalNotPending, chat.CodeAlreadyAnswered:
		return http.StatusBadRequest
	case chat.CodeOperationTimeout:
		return http.StatusGatewayTimeout
	case chat.CodeInternal:
		return http.StatusInternalServerError
	}
	return http.StatusServiceUnavailable
}

// OperationContext bounds the steps a plain HTTP endpoint (the AI SDK's,
// AG-UI's) takes before it streams (asking, approving, reading the
// conversation, checking the session) as --operation-timeout bounds a
// GraphQL operation; the stream itself is not bounded. d <= 0 is no bound.
func OperationContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// OperationError is the error a step bounded by op ended with, as a client
// sees it: OPERATION_TIMEOUT (504) once op's deadline passed, whatever the
// step made of it, as GraphQL says it; otherwise err.
func OperationError(op context.Context, err error) error {
	if err != nil && errors.Is(op.Err(), context.DeadlineExceeded) {
		return &chat.Error{Code: chat.CodeOperationTimeout, Message: msgOperationTimeout}
	}
	return err
}
