package bedrock

import (
	"errors"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tokencast/tokencast/internal/chat"
)

// Codes of the failures this provider reports, beside chat.CodeProvider.
const (
	// CodeAuth: AWS refused the credentials or their permissions.
	CodeAuth = "PROVIDER_AUTH"
	// CodeRateLimited: Bedrock throttled the call or a quota ran out.
	CodeRateLimited = "RATE_LIMITED"
	// CodeUnavailable: Bedrock or the model failed on its side.
	CodeUnavailable = "PROVIDER_UNAVAILABLE"
	// CodeIncomplete: the stream ended before messageStop, so what arrived
	// must not pass for a whole answer.
	CodeIncomplete = "INCOMPLETE"
)

// Messages safe to show a user; the service's own words stay in Cause.
const (
	msgAuth        = "the model provider rejected the server's credentials"
	msgRateLimited = "the model provider is rate limiting requests; try again later"
	msgUnavailable = "the model provider is unavailable; try again later"
	msgRejected    = "the model provider rejected the request"
	msgIncomplete  = "the answer was cut off before it was complete"
)

// Error is a failed answer. Code and Message are safe to show a user (it
// unwraps to a *chat.Error carrying them); Cause holds the SDK's error with
// the service's own words, for the log only.
type Error struct {
	Code    string
	Message string
	// StatusCode is the HTTP status of a call that failed before its stream
	// started, 0 for a failure mid-stream or before any response.
	StatusCode int
	Cause      error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return "bedrock: " + e.Code + ": " + e.Message
	}
	return "bedrock: " + e.Code + ": " + e.Cause.Error()
}

// Unwrap exposes the user-safe *chat.Error first, then the cause.
func (e *Error) Unwrap() []error {
	errs := []error{&chat.Error{Code: e.Code, Message: e.Message}}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// mapError classifies an SDK error by its modelled exception, whether it
// came as an HTTP response or as an exception frame mid-stream, and
// otherwise by its HTTP status.
func mapError(err error) *Error {
	e := &Error{Cause: err}
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) {
		e.StatusCode = resp.HTTPStatusCode()
	}
	switch {
	case as[*types.ThrottlingException](err), as[*types.ServiceQuotaExceededException](err):
		e.Code, e.Message = CodeRateLimited, msgRateLimited
	case as[*types.ModelStreamErrorException](err), as[*types.InternalServerException](err),
		as[*types.ServiceUnavailableException](err), as[*types.ModelNotReadyException](err),
		as[*types.ModelTimeoutException](err):
		e.Code, e.Message = CodeUnavailable, msgUnavailable
	case as[*types.AccessDeniedException](err):
		e.Code, e.Message = CodeAuth, msgAuth
	case as[*types.ValidationException](err), as[*types.ResourceNotFoundException](err),
		as[*types.ModelErrorException](err):
		e.Code, e.Message = chat.CodeProvider, msgRejected
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		// Unmodelled: UnrecognizedClientException, expired or bad signatures.
		e.Code, e.Message = CodeAuth, msgAuth
	case e.StatusCode == http.StatusTooManyRequests:
		e.Code, e.Message = CodeRateLimited, msgRateLimited
	case e.StatusCode >= 500, as[*smithyhttp.RequestSendError](err):
		e.Code, e.Message = CodeUnavailable, msgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, msgRejected
	}
	return e
}

// as reports whether err has a T in its chain.
func as[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
