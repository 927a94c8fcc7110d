package chat

import (
	"context"
	"errors"
	"time"
)

// Queue is the workers' side of the request queue. A request is delivered
// to one worker at a time; each delivery is an attempt, which owns the
// request through its claim until a newer attempt claims it or the answer's
// end is committed.
type Queue interface {
	// NextRequest waits for the next request, until ctx ends.
	NextRequest(ctx context.Context) (Delivery, error)
	// ClaimAttempt makes the caller the owner of a request, as attempt at
	// least min. Of two workers that both believe they hold the request (a
	// redelivery while the first still runs), exactly one can commit its
	// end. A claim with Final set says an earlier attempt already did.
	ClaimAttempt(ctx context.Context, session, request string, min uint64) (Claim, error)
	// CommitAttempt records end as the request's terminal event while c
	// still holds; ErrSuperseded once a newer attempt has claimed the
	// request.
	CommitAttempt(ctx context.Context, session, request string, c Claim, end Event) error
	// WatchAttempts calls fn with the request's current attempt, then with
	// each attempt claimed after it, until stop is called.
	WatchAttempts(session, request string, fn func(attempt uint64)) (stop func(), err error)
	// Cancelled reports whether the user has asked to stop the request.
	Cancelled(ctx context.Context, session, request string) (bool, error)
	// WatchCancels calls fn for each request the user asks to stop, until
	// stop is called.
	WatchCancels(fn func(session, request string)) (stop func(), err error)
	// WatchExhausted calls fn, on one worker of the cluster, for each
	// request whose deliveries ran out; an error from fn asks for the call
	// again.
	WatchExhausted(fn func(req Request, deliveries uint64) error) (stop func(), err error)
	// RecordDeadLetter keeps a dead letter for the operator.
	RecordDeadLetter(ctx context.Context, d DeadLetter) error
}

// Delivery is a request handed to a worker; it must be acked, or released,
// or left to expire so another worker gets it.
type Delivery interface {
	// Request is the request delivered.
	Request() Request
	// Attempt counts deliveries of the request, from 1.
	Attempt() uint64
	// Ack says the request is done.
	Ack(ctx context.Context) error
	// InProgress resets the redelivery timer while an answer is generated.
	InProgress() error
	// Release hands the request back for another attempt after delay.
	Release(ctx context.Context, delay time.Duration) error
}

// Claim is an attempt's hold on a request, from ClaimAttempt.
type Claim struct {
	// Attempt is the attempt number the claimant now owns.
	Attempt uint64
	// Final, when set, is the terminal event an earlier attempt committed:
	// the request is answered, and only that event may need publishing.
	Final *Event
	// Revision is the queue's own mark of the claim, opaque to a worker,
	// which hands it back unchanged to CommitAttempt: the commit holds only
	// while no claim was made after it.
	Revision uint64
}

// ErrSuperseded says a newer attempt has claimed the request. The attempt
// that learns it lost its delivery without knowing (a broker restart, a
// pause longer than the ack wait): the request belongs to the newer attempt,
// which must be the one to end it and ack it, so this one stops without a
// word.
var ErrSuperseded = errors.New("a newer attempt has claimed the request")

// DeadLetter is the operator's record of a request that could not be
// answered: every delivery failed.
type DeadLetter struct {
	Request    Request   `json:"request"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}
