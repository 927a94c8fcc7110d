package bedrock

import (
	"errors"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// mapError classifies an SDK error by its modelled exception, whether it
// came as an HTTP response or as an exception frame mid-stream, and
// otherwise by its HTTP status. Cause keeps the SDK's error with the
// service's own words, for the log only. A throttled call keeps the
// response's Retry-After, so that the retry waits as long as AWS asked;
// an exception mid-stream has no header of its own and is never retried.
func mapError(err error) *upstream.Error {
	e := &upstream.Error{Provider: name, Cause: err}
	var header http.Header
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) {
		e.StatusCode = resp.HTTPStatusCode()
		if r := resp.HTTPResponse(); r != nil && r.Response != nil {
			header = r.Header
		}
	}
	switch {
	case as[*types.ThrottlingException](err), as[*types.ServiceQuotaExceededException](err):
		e.Code, e.Message = upstream.CodeThrottled, upstream.MsgThrottled
		e.RetryAfter = upstream.RetryAfter(header, time.Now())
	case as[*types.ModelStreamErrorException](err), as[*types.InternalServerException](err),
		as[*types.ServiceUnavailableException](err), as[*types.ModelNotReadyException](err),
		as[*types.ModelTimeoutException](err):
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgUnavailable
	case as[*types.AccessDeniedException](err):
		e.Code, e.Message = upstream.CodeAuth, upstream.MsgAuth
	case as[*types.ValidationException](err), as[*types.ResourceNotFoundException](err),
		as[*types.ModelErrorException](err):
		e.Code, e.Message = chat.CodeProvider, upstream.MsgRejected
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		// Unmodelled: UnrecognizedClientException, expired or bad signatures.
		e.Code, e.Message = upstream.CodeAuth, upstream.MsgAuth
	case e.StatusCode == http.StatusTooManyRequests:
		e.Code, e.Message = upstream.CodeThrottled, upstream.MsgThrottled
		e.RetryAfter = upstream.RetryAfter(header, time.Now())
	case e.StatusCode >= 500, as[*smithyhttp.RequestSendError](err):
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, upstream.MsgRejected
	}
	return e
}

// as reports whether err has a T in its chain.
func as[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
