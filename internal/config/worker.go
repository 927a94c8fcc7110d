package config

import (
	"flag"
	"time"
)

// Worker is how this process generates answers: how many at once, how the
// deltas are coalesced, and how long a model may take before it is given up
// or retried.
type Worker struct {
	// Count is the answers generated at once.
	Count             int
	Coalesce          Coalesce
	FirstTokenTimeout time.Duration
	IdleTimeout       time.Duration
	ProviderRetries   int
	RetryBudget       time.Duration
	Agent             Agent
}

// Agent bounds agent runs (an answer in which the model calls tools).
type Agent struct {
	MaxSteps        int
	ToolTimeout     time.Duration
	RunTimeout      time.Duration
	MaxToolOutput   int
	ApprovalTimeout time.Duration
	ParallelTools   int
}

// Coalesce is when buffered deltas are flushed as one event.
type Coalesce struct {
	Window time.Duration
	Bytes  int
	Chunks int
}

func (w *Worker) flags(fs *flag.FlagSet) {
	fs.IntVar(&w.Count, "workers", 8, "answers generated at once by this process")
	fs.DurationVar(&w.Coalesce.Window, "coalesce-window", 50*time.Millisecond, "after the first delta, flush buffered deltas at least this often (0 sends every chunk)")
	fs.IntVar(&w.Coalesce.Bytes, "coalesce-bytes", 512, "flush buffered deltas once they reach this many bytes (0: no size limit)")
	fs.IntVar(&w.Coalesce.Chunks, "coalesce-chunks", 0, "flush buffered deltas every N provider chunks (6 is the AWS sample; 0: off)")
	fs.DurationVar(&w.FirstTokenTimeout, "first-token-timeout", time.Minute, "a model that has not produced its first token after this long is given up (then retried or its fallback tried)")
	fs.DurationVar(&w.IdleTimeout, "idle-timeout", 30*time.Second, "a model silent for this long mid-answer ends the answer with PROVIDER_TIMEOUT")
	fs.IntVar(&w.ProviderRetries, "provider-retries", 2, "extra attempts per model when it is throttled or unavailable before its first token")
	fs.DurationVar(&w.RetryBudget, "retry-budget", 30*time.Second, "most time one answer may spend waiting between provider attempts (backoff and Retry-After)")
	fs.IntVar(&w.Agent.MaxSteps, "agent-max-steps", 10, "agent runs: model calls one run may make; one more ends it with STEP_LIMIT")
	fs.DurationVar(&w.Agent.ToolTimeout, "agent-tool-timeout", 30*time.Second, "agent runs: a tool call taking longer is stopped and the model told it timed out (a tool's own timeout in --config wins)")
	fs.DurationVar(&w.Agent.RunTimeout, "agent-run-timeout", 10*time.Minute, "agent runs: a run taking longer ends with RUN_TIMEOUT")
	fs.IntVar(&w.Agent.MaxToolOutput, "agent-max-tool-output", 16<<10, "agent runs: bytes of a tool's result kept, shown and given to the model; the rest is cut with a visible mark")
	fs.DurationVar(&w.Agent.ApprovalTimeout, "agent-approval-timeout", 24*time.Hour, "agent runs: an approval unanswered this long is a denial, and the model is told")
	fs.IntVar(&w.Agent.ParallelTools, "agent-parallel-tools", 8, "agent runs: tool calls of one step run at once")
}
