package tools

import "time"

// Policy is how a tool may be run, as the config's tools section says
// ("server.tool": {approval, idempotent, timeout}). The registry does not
// apply it: the run loop does, since approvals are durable pauses and
// repeats are decided by what the run has stored.
type Policy struct {
	// Approval means a person must approve each call before it runs.
	Approval bool
	// NonIdempotent means the tool must not silently run twice: a call
	// whose outcome is unknown (the worker died, the server failed mid-call)
	// is reported as failed, never repeated.
	NonIdempotent bool
	// Timeout bounds one call; 0 means the run's default.
	Timeout time.Duration
}
