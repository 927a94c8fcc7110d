package chatcli

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// approval is a tool call that waits for the session owner's approval, or
// its answer.
type approval struct {
	CallID   string `json:"callId"`
	Tool     string `json:"tool"`
	Input    string `json:"input"`
	Approved bool   `json:"approved"`
	Reason   string `json:"reason"`
	Expires  string `json:"expires"`
}

// deniedReason is what the model is told when the terminal says no.
const deniedReason = "denied at the terminal"

const approveQuery = `mutation Approve($sessionId: String!, $requestId: ID!, $callId: ID!, $approve: Boolean!, $reason: String) {
  answerApproval(sessionId: $sessionId, requestId: $requestId, callId: $callId, approve: $approve, reason: $reason) { callId approved }
}`

// approvals asks the terminal about one answer's tool calls that wait for
// approval, one prompt at a time, while the answer's events go on being
// read: the prompt waits for stdin in a goroutine and answers over HTTP, and
// the answer's loop hears of it on done. Only that loop calls its methods.
type approvals struct {
	c         *Client
	requestID string
	d         *display
	queue     []approval // requested, waiting for the prompt before them
	asking    *prompt    // the prompt on screen
	done      chan promptResult
}

type prompt struct {
	approval
	cancel context.CancelFunc
}

// promptResult is how a prompt ended.
type promptResult struct {
	line      string
	noInput   bool  // stdin had no line for it: denied
	abandoned bool  // taken down before a line came
	err       error // answerApproval failed
}

func newApprovals(c *Client, requestID string, d *display) *approvals {
	return &approvals{c: c, requestID: requestID, d: d, done: make(chan promptResult, 1)}
}

// requested queues a prompt for a, unless it is on screen or queued already
// (a RESTART publishes the requests of a run again).
func (ap *approvals) requested(ctx context.Context, a approval) {
	if ap.asking != nil && ap.asking.CallID == a.CallID {
		return
	}
	for _, q := range ap.queue {
		if q.CallID == a.CallID {
			return
		}
	}
	ap.queue = append(ap.queue, a)
	ap.next(ctx)
}

// next puts the first queued approval on screen when none is.
func (ap *approvals) next(ctx context.Context) {
	if ap.asking != nil || len(ap.queue) == 0 || ctx.Err() != nil {
		return
	}
	a := ap.queue[0]
	ap.queue = ap.queue[1:]
	if a.Reason != "" {
		ap.d.line(a.Tool + ": " + a.Reason)
	}
	ap.d.prompt(fmt.Sprintf("approve %s %s? [y/N] ", a.Tool, a.Input))
	pctx, cancel := context.WithCancel(ctx)
	ap.asking = &prompt{approval: a, cancel: cancel}
	go func() { ap.done <- ap.answer(pctx, a) }()
}

// answer reads the terminal's answer and sends it. It runs in its own
// goroutine; ctx ends when the prompt is taken down.
func (ap *approvals) answer(ctx context.Context, a approval) promptResult {
	text, err := ap.c.lines.Next(ctx)
	if ctx.Err() != nil {
		return promptResult{abandoned: true}
	}
	yes := err == nil && isYes(text)
	vars := map[string]any{"sessionId": ap.c.opts.Session, "requestId": ap.requestID, "callId": a.CallID, "approve": yes}
	if !yes {
		vars["reason"] = deniedReason
	}
	var out struct{}
	return promptResult{line: text, noInput: err != nil, err: ap.c.post(ctx, approveQuery, vars, &out)}
}

func isYes(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "y" || s == "yes"
}

// finished takes down the prompt that ended with res and puts the next one
// on screen.
func (ap *approvals) finished(ctx context.Context, res promptResult) {
	if ap.asking == nil {
		return
	}
	a := ap.asking.approval
	ap.asking.cancel()
	ap.asking = nil
	switch {
	case res.abandoned:
		ap.d.answered("", false)
	case res.noInput:
		ap.d.answered("(no answer: denied)", false)
	default:
		// On a terminal, what was typed is on the prompt's line already.
		ap.d.answered(strings.TrimSpace(res.line), ap.c.opts.Prompt && ap.c.opts.Dim)
	}
	if res.err != nil && !errors.Is(res.err, context.Canceled) {
		ap.d.line(fmt.Sprintf("tokencast: answer the approval of %s: %v", a.Tool, res.err))
	}
	ap.next(ctx)
}

// settled is an APPROVAL: the call is no longer waiting, whoever answered.
// A prompt still waiting for its line is taken down.
func (ap *approvals) settled(ctx context.Context, a approval) {
	for i, q := range ap.queue {
		if q.CallID == a.CallID {
			ap.queue = append(ap.queue[:i], ap.queue[i+1:]...)
			return
		}
	}
	if ap.asking == nil || ap.asking.CallID != a.CallID {
		return
	}
	ap.asking.cancel()
	res := <-ap.done
	if res.abandoned {
		ap.d.answered("(answered elsewhere)", false)
		ap.asking = nil
		ap.next(ctx)
		return
	}
	res.err = nil // the answer is in, whichever came first
	ap.finished(ctx, res)
}

// stop takes down the prompt on screen, if any, when the answer ends.
func (ap *approvals) stop() {
	ap.queue = nil
	if ap.asking == nil {
		return
	}
	ap.asking.cancel()
	<-ap.done
	ap.asking = nil
	ap.d.answered("", false)
}
