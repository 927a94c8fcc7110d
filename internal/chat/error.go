package chat

import "errors"

// Error is a failure with a stable code and a message safe to show a client.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// The message ErrorMessage gives for an error that carries none of its own.
const msgInternal = "internal error"

// ErrorCode returns the stable code a client, a metric or a trace sees for
// err: "" for nil, the Code of the *Error in err's chain (a GraphQL error
// made for a client carries one), and CodeInternal for anything else.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the message of the *Error in err's chain, which is
// safe to show a client, or a generic one for anything else: other errors
// may carry internals (a path, an address, a provider's words).
func ErrorMessage(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return msgInternal
}

// Error codes a client sees, in GraphQL extensions.code and in ERROR events.
const (
	CodeBadInput        = "BAD_USER_INPUT"
	CodeEmptyMessage    = "EMPTY_MESSAGE"
	CodeMessageTooLarge = "MESSAGE_TOO_LARGE"
	CodeBadSessionID    = "INVALID_SESSION_ID"
	CodeBadLocale       = "INVALID_LOCALE"
	CodeBadRequestID    = "INVALID_REQUEST_ID"
	CodeBadCursor       = "INVALID_CURSOR"
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeUnavailable     = "UNAVAILABLE"
	CodeInternal        = "INTERNAL"
	CodeProvider        = "PROVIDER_ERROR"
	CodeTimeout         = "PROVIDER_TIMEOUT"
	// CodeThrottled: the provider asked us to slow down (its HTTP 429).
	CodeThrottled = "PROVIDER_THROTTLED"
	// CodeProviderUnavailable: the provider failed on its side or could not
	// be reached.
	CodeProviderUnavailable = "PROVIDER_UNAVAILABLE"
	// CodeProviderAuth: the provider refused the server's credentials.
	CodeProviderAuth = "PROVIDER_AUTH"
	CodeIncomplete   = "INCOMPLETE"
	CodeUnknownModel = "UNKNOWN_MODEL"
	CodeNotFound     = "NOT_FOUND"
	CodeRateLimited  = "RATE_LIMITED"
	// CodeTooManyConnections: the principal holds as many streaming
	// connections as it may.
	CodeTooManyConnections = "TOO_MANY_CONNECTIONS"
	// CodeResultTooLarge: a query's result is larger than a streaming
	// connection may be sent at once.
	CodeResultTooLarge = "RESULT_TOO_LARGE"
	// CodeStorageUnavailable: the store could not write (its disk is full),
	// so the answer ended without being kept whole.
	CodeStorageUnavailable = "STORAGE_UNAVAILABLE"
	// CodeOperationTimeout: a query or mutation ran out of its time
	// (--operation-timeout).
	CodeOperationTimeout = "OPERATION_TIMEOUT"
	// CodeCancelled: the client left before its operation finished.
	CodeCancelled = "CANCELLED"
	// CodeStepLimit: an agent run asked for more model calls than a run
	// may make (agent max_steps).
	CodeStepLimit = "STEP_LIMIT"
	// CodeRunTimeout: an agent run took longer than a run may (agent
	// run_timeout).
	CodeRunTimeout = "RUN_TIMEOUT"
	// CodeApprovalNotPending: no approval of that tool call is awaited.
	CodeApprovalNotPending = "APPROVAL_NOT_PENDING"
	// CodeAlreadyAnswered: the approval was answered already.
	CodeAlreadyAnswered = "ALREADY_ANSWERED"
	// CodeBudgetExceeded: the principal's budget is spent until it resets
	// (extensions resetsAt, retryAfter).
	CodeBudgetExceeded = "BUDGET_EXCEEDED"
)

// StopBudget is the stop reason of an answer stopped because the budget of
// its principal ran out while it streamed.
const StopBudget = "BUDGET"

// ErrStorageFull says the store cannot write for lack of space: its disk is
// full or it is out of the resources it was given. Retrying soon is futile,
// unlike a lost connection or a leader election.
var ErrStorageFull = errors.New("the store has no space left to write")
