package chat

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// Every layer reads an error's code the same way: the domain's own code
// through any wrapping, INTERNAL for anything unexpected, and a message a
// client may see only when the error was made for one.
func TestErrorCodeAndMessage(t *testing.T) {
	forbidden := &Error{Code: CodeForbidden, Message: "this session belongs to someone else"}
	for _, tc := range []struct {
		name        string
		err         error
		code, msgTo string
	}{
		{"nil", nil, "", msgInternal},
		{"a domain error", forbidden, CodeForbidden, forbidden.Message},
		{"wrapped with what was being done", fmt.Errorf("claim session s-1: %w", forbidden), CodeForbidden, forbidden.Message},
		{"joined with its cause", errors.Join(forbidden, errors.New("nats: timeout")), CodeForbidden, forbidden.Message},
		{"a Go error", errors.New("open /var/lib/tokencast/secret: permission denied"), CodeInternal, msgInternal},
		{"a context's end", context.DeadlineExceeded, CodeInternal, msgInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorCode(tc.err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
			if got := ErrorMessage(tc.err); got != tc.msgTo {
				t.Errorf("ErrorMessage = %q, want %q", got, tc.msgTo)
			}
		})
	}
}
