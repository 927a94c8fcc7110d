package upstream

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		header http.Header
		want   time.Duration
	}{
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"99999999999"}}, 0},
		{http.Header{"Retry-After": {"4000000"}}, maxRetryAfter},
		{http.Header{"Retry-After-Ms": {"250.5"}}, 250500 * time.Microsecond},
		{http.Header{"Retry-After-Ms": {"Inf"}}, maxRetryAfter},
		{http.Header{"Retry-After-Ms": {"NaN"}, "Retry-After": {"1"}}, time.Second},
		{http.Header{}, 0},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.header, now); got != tt.want {
			t.Errorf("RetryAfter(%v) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestStatusError(t *testing.T) {
	tests := []struct {
		status     int
		header     http.Header
		code       string
		retryAfter time.Duration
	}{
		{401, nil, CodeAuth, 0},
		{403, nil, CodeAuth, 0},
		{429, http.Header{"Retry-After": {"7"}}, CodeThrottled, 7 * time.Second},
		{429, nil, CodeThrottled, 0},
		{500, http.Header{"Retry-After": {"7"}}, CodeUnavailable, 0},
		{529, nil, CodeUnavailable, 0},
		{400, nil, chat.CodeProvider, 0},
		{404, nil, chat.CodeProvider, 0},
	}
	for _, tt := range tests {
		body := "RAW " + strings.Repeat("x", 2*maxErrorBody)
		resp := &http.Response{StatusCode: tt.status, Header: tt.header, Body: io.NopCloser(strings.NewReader(body))}
		e := StatusError(resp, time.Now())
		e.Provider = "p"
		var public *chat.Error
		if !errors.As(e, &public) || public.Code != tt.code || public.Message == "" || strings.Contains(public.Message, "RAW") {
			t.Errorf("HTTP %d: public error %+v, want code %s and a safe message", tt.status, public, tt.code)
		}
		if e.StatusCode != tt.status || e.RetryAfterHint() != tt.retryAfter {
			t.Errorf("HTTP %d: status, retry after = %d, %v; want %d, %v", tt.status, e.StatusCode, e.RetryAfterHint(), tt.status, tt.retryAfter)
		}
		if text := e.Error(); !strings.HasPrefix(text, "p: "+tt.code+": ") || !strings.Contains(text, "RAW") || len(text) > maxErrorBody+64 {
			t.Errorf("HTTP %d: log-side text %.80q... (%d bytes) lost the prefix or the body, or kept too much", tt.status, text, len(text))
		}
	}
}

func TestReadError(t *testing.T) {
	tooLarge := ReadError("p", ErrEventTooLarge)
	cut := ReadError("p", io.ErrUnexpectedEOF)
	if tooLarge.Code != chat.CodeProvider || !errors.Is(tooLarge, ErrEventTooLarge) {
		t.Errorf("oversized event: %v, want %s wrapping ErrEventTooLarge", tooLarge, chat.CodeProvider)
	}
	if cut.Code != CodeIncomplete || !errors.Is(cut, io.ErrUnexpectedEOF) {
		t.Errorf("cut stream: %v, want %s wrapping the read error", cut, CodeIncomplete)
	}
}
