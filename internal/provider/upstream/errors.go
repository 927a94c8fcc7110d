package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Codes of the failures a provider reports, beside chat.CodeProvider for a
// request the provider rejected or an answer it failed to give.
const (
	// CodeAuth: the provider rejected the configured credentials (HTTP
	// 401/403, AWS access denied).
	CodeAuth = chat.CodeProviderAuth
	// CodeThrottled: the provider asked us to slow down (HTTP 429, a quota
	// ran out). Not chat.CodeRateLimited, which is the server's own limit on
	// how often one principal may ask.
	CodeThrottled = chat.CodeThrottled
	// CodeUnavailable: the provider failed on its side or is overloaded
	// (HTTP 5xx), or could not be reached.
	CodeUnavailable = chat.CodeProviderUnavailable
	// CodeIncomplete: the stream ended before the provider said the answer
	// was complete, so what arrived must not pass for a whole answer.
	CodeIncomplete = chat.CodeIncomplete
	// CodeTimeout: the provider took longer than the caller allowed.
	CodeTimeout = chat.CodeTimeout
)

// Messages safe to show a user; the provider's own words stay in Cause.
const (
	// MsgAuth goes with CodeAuth.
	MsgAuth = "the model provider rejected the server's credentials"
	// MsgThrottled goes with CodeThrottled.
	MsgThrottled = "the model provider is rate limiting requests; try again later"
	// MsgUnavailable goes with CodeUnavailable.
	MsgUnavailable = "the model provider is unavailable; try again later"
	// MsgOverloaded goes with CodeUnavailable when the provider said it is
	// overloaded.
	MsgOverloaded = "the model provider is overloaded; try again later"
	// MsgRejected goes with chat.CodeProvider when the provider refused the
	// request.
	MsgRejected = "the model provider rejected the request"
	// MsgFailed goes with chat.CodeProvider when the provider failed, or
	// sent what we cannot read, while answering.
	MsgFailed = "the model provider failed while answering"
	// MsgIncomplete goes with CodeIncomplete.
	MsgIncomplete = "the answer was cut off before it was complete"
)

// maxErrorBody bounds how much of an error response is kept for the log.
const maxErrorBody = 4 << 10

// Error is a failed answer. Code and Message are safe to show a user (it
// unwraps to a *chat.Error carrying them); Cause holds the provider's own
// words, for the log only.
type Error struct {
	// Provider names the provider in the log-side text ("openai"); empty
	// leaves the text unprefixed.
	Provider string
	// Code is the stable code a client sees: one of this package's codes or
	// chat.CodeProvider.
	Code string
	// Message is the user-safe text that goes with Code.
	Message string
	// StatusCode is the provider's HTTP status, 0 for a failure mid-stream
	// or before any response.
	StatusCode int
	// RetryAfter is how long the provider asked us to wait before trying
	// again, 0 when it did not say.
	RetryAfter time.Duration
	// Cause is what went wrong in the provider's or the transport's words,
	// for the log only; nil when Message says it all.
	Cause error
}

// Error returns the log-side text: the provider, the code and the cause
// (the user-safe message when there is no cause).
func (e *Error) Error() string {
	text := e.Code + ": " + e.Message
	if e.Cause != nil {
		text = e.Code + ": " + e.Cause.Error()
	}
	if e.Provider == "" {
		return text
	}
	return e.Provider + ": " + text
}

// Unwrap exposes the user-safe *chat.Error first, then the cause.
func (e *Error) Unwrap() []error {
	errs := []error{&chat.Error{Code: e.Code, Message: e.Message}}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// RetryAfterHint returns how long the provider asked us to wait before
// trying again, 0 when it did not say.
func (e *Error) RetryAfterHint() time.Duration {
	return e.RetryAfter
}

// StatusError maps a non-200 response to an Error, keeping the head of its
// body in the cause. It reads at most a few KiB of the body and leaves
// closing it to the caller.
func StatusError(resp *http.Response, now time.Time) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{
		StatusCode: resp.StatusCode,
		Cause:      fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body)),
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Code, e.Message = CodeAuth, MsgAuth
	case s == http.StatusTooManyRequests:
		e.Code, e.Message = CodeThrottled, MsgThrottled
		e.RetryAfter = RetryAfter(resp.Header, now)
	case s >= 500:
		e.Code, e.Message = CodeUnavailable, MsgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, MsgRejected
	}
	return e
}

// ReadError maps a failure of SSEReader.Next other than io.EOF: an event
// too large to hold is the provider's fault, anything else cut the answer
// off.
func ReadError(provider string, err error) *Error {
	if errors.Is(err, ErrEventTooLarge) {
		return &Error{Provider: provider, Code: chat.CodeProvider, Message: MsgFailed, Cause: err}
	}
	return &Error{Provider: provider, Code: CodeIncomplete, Message: MsgIncomplete,
		Cause: fmt.Errorf("read stream: %w", err)}
}

// maxRetryAfter caps a provider's wish, so a silly value cannot overflow.
const maxRetryAfter = 24 * time.Hour

// RetryAfter reads how long to wait from retry-after-ms (OpenAI's own) when
// present, else from Retry-After (seconds or an HTTP date), capped at 24
// hours; 0 when neither says.
func RetryAfter(h http.Header, now time.Time) time.Duration {
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
