package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/tools/toolstest"
)

// A session that closed under us (as the keepalive closes one whose pings
// fail) never carried the call, so the call goes again on a new session,
// and runs once.
func TestCallOnClosedSession(t *testing.T) {
	url, calls := toolstest.Server(t, toolstest.Tool{Name: "echo", Handler: func(_ context.Context, args map[string]any) (string, error) {
		return fmt.Sprint(args["text"]), nil
	}})
	r, err := New(t.Context(), []Server{{Name: "remote", URL: url}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, server := range []string{"remote", Builtin} {
		if err := r.byName[server].session.Close(); err != nil {
			t.Fatalf("closing the %s session: %v", server, err)
		}
	}
	got, err := r.Call(t.Context(), "echo", json.RawMessage(`{"text":"again"}`))
	if err != nil || got.Output != "again" || calls("echo") != 1 {
		t.Errorf("Call = %+v, %v, %d runs; want again, 1 run", got, err, calls("echo"))
	}
	if got, err := r.Call(t.Context(), "calculator", json.RawMessage(`{"expression":"6*7"}`)); err != nil || got.Output != "42" {
		t.Errorf("built-in Call = %+v, %v; want 42", got, err)
	}
}

// A JSON answer is read up to the bound and no further.
func TestLimitedBody(t *testing.T) {
	tests := []struct {
		size     int
		tooLarge bool
	}{{0, false}, {10, false}, {100, false}, {101, true}, {5000, true}}
	for _, tt := range tests {
		body := newLimitedBody(io.NopCloser(strings.NewReader(strings.Repeat("x", tt.size))), 100)
		got, err := io.ReadAll(body)
		if tt.tooLarge {
			if !errors.Is(err, errTooLarge) || len(got) > 100 {
				t.Errorf("%d bytes: read %d, error %v; want at most 100 and errTooLarge", tt.size, len(got), err)
			}
			continue
		}
		if err != nil || len(got) != tt.size {
			t.Errorf("%d bytes: read %d, error %v", tt.size, len(got), err)
		}
	}
}
