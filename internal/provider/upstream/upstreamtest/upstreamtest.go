// Package upstreamtest holds the assertions every provider's tests share.
package upstreamtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// CheckCancel runs stream with a context cancelled once the fake server has
// the request (arrived closed), and checks that the caller gets its own
// cancel back, not a provider failure, and that the fake saw its request
// cancelled (cancelled closed): the upstream call really stopped.
func CheckCancel(t *testing.T, arrived, cancelled <-chan struct{}, stream func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()
	err := stream(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stream error = %v, want context.Canceled", err)
	}
	var public *chat.Error
	if errors.As(err, &public) {
		t.Errorf("a cancel is reported as provider failure %v", public)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the fake server never saw its request cancelled")
	}
}

// Failure is what a failed stream must show.
type Failure struct {
	Code       string
	Status     int
	RetryAfter time.Duration
	// Hidden strings (the provider's own words, the API key) must not reach
	// the user-facing message.
	Hidden []string
	// CauseHas, when set, must stay in the log-side error.
	CauseHas string
}

// CheckFailure checks a provider's error: a *chat.Error with the stable
// code and a safe message for users, an *upstream.Error with the status and
// Retry-After, and the provider's words kept for the log.
func CheckFailure(t *testing.T, err error, want Failure) {
	t.Helper()
	var public *chat.Error
	if !errors.As(err, &public) {
		t.Fatalf("error %v does not carry a *chat.Error", err)
	}
	if public.Code != want.Code {
		t.Errorf("code = %q, want %q (err %v)", public.Code, want.Code, err)
	}
	if public.Message == "" {
		t.Errorf("the user-facing message is empty")
	}
	for _, h := range want.Hidden {
		if strings.Contains(public.Message, h) {
			t.Errorf("user-facing message %q leaks %q", public.Message, h)
		}
	}
	var perr *upstream.Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %v is not an *upstream.Error", err)
	}
	if perr.StatusCode != want.Status || perr.RetryAfter != want.RetryAfter {
		t.Errorf("status, retry after = %d, %v; want %d, %v", perr.StatusCode, perr.RetryAfter, want.Status, want.RetryAfter)
	}
	if want.CauseHas != "" && !strings.Contains(err.Error(), want.CauseHas) {
		t.Errorf("log-side error %q lost the provider's words", err)
	}
}
