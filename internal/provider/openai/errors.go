package openai

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Codes of the failures this provider reports, beside chat.CodeProvider.
const (
	// CodeAuth: the provider rejected the configured credentials (HTTP 401/403).
	CodeAuth = "PROVIDER_AUTH"
	// CodeRateLimited: the provider asked us to slow down (HTTP 429).
	CodeRateLimited = "RATE_LIMITED"
	// CodeUnavailable: the provider failed on its side (HTTP 5xx).
	CodeUnavailable = "PROVIDER_UNAVAILABLE"
	// CodeIncomplete: the stream ended before the provider said the answer
	// was complete, so what arrived must not pass for a whole answer.
	CodeIncomplete = "INCOMPLETE"
)

// Messages safe to show a user; the provider's own words stay in Cause.
const (
	msgAuth        = "the model provider rejected the server's credentials"
	msgRateLimited = "the model provider is rate limiting requests; try again later"
	msgUnavailable = "the model provider is unavailable; try again later"
	msgRejected    = "the model provider rejected the request"
	msgFailed      = "the model provider failed while answering"
	msgIncomplete  = "the answer was cut off before it was complete"
)

// maxErrorBody bounds how much of an error response is kept for the log.
const maxErrorBody = 4 << 10

// Error is a failed answer. Code and Message are safe to show a user (it
// unwraps to a *chat.Error carrying them); Cause holds the provider's own
// words, for the log only.
type Error struct {
	Code    string
	Message string
	// StatusCode is the provider's HTTP status, 0 for a failure mid-stream.
	StatusCode int
	// RetryAfter is how long the provider asked us to wait before trying
	// again, 0 when it did not say.
	RetryAfter time.Duration
	Cause      error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return "openai: " + e.Code + ": " + e.Message
	}
	return "openai: " + e.Code + ": " + e.Cause.Error()
}

// Unwrap exposes the user-safe *chat.Error first, then the cause.
func (e *Error) Unwrap() []error {
	errs := []error{&chat.Error{Code: e.Code, Message: e.Message}}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// statusError maps a non-200 response to an Error, keeping the head of its
// body in the cause.
func statusError(resp *http.Response, now time.Time) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{
		StatusCode: resp.StatusCode,
		Cause:      fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body)),
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Code, e.Message = CodeAuth, msgAuth
	case s == http.StatusTooManyRequests:
		e.Code, e.Message = CodeRateLimited, msgRateLimited
		e.RetryAfter = retryAfter(resp.Header, now)
	case s >= 500:
		e.Code, e.Message = CodeUnavailable, msgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, msgRejected
	}
	return e
}

// maxRetryAfter caps a provider's wish, so a silly value cannot overflow.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads how long to wait from retry-after-ms (OpenAI's own) or
// Retry-After (seconds or an HTTP date).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
		if ms >= float64(maxRetryAfter/time.Millisecond) {
			return maxRetryAfter
		}
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := h.Get("Retry-After")
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), maxRetryAfter)
	}
	return 0
}
