package config

import (
	"flag"
	"time"
)

// Streams is how answers reach subscribers over WebSocket and SSE: what a
// connection may send and queue, how fast a frame must be written, and
// what a late subscriber is replayed.
type Streams struct {
	WSReadLimit      int64
	WriteTimeout     time.Duration
	QueueSize        int
	QueueBytes       int
	MaxResultBytes   int
	InitTimeout      time.Duration
	MaxSubscriptions int
	LateJoinWindow   time.Duration
	LateJoinGrace    time.Duration
}

func (s *Streams) flags(fs *flag.FlagSet) {
	fs.DurationVar(&s.LateJoinWindow, "late-join-window", 10*time.Second, "a subscription without a cursor is replayed the session's latest answer if it ended less than this long ago (a client that asks before its subscription is live loses nothing; 0: only answers in flight)")
	fs.DurationVar(&s.LateJoinGrace, "late-join-grace", 2*time.Second, "such a replay waits this long for the subscriber's own question first: a client that subscribes, then asks a follow-up, gets the new answer, not the previous one again")
	fs.Int64Var(&s.WSReadLimit, "ws-read-limit", 256<<10, "largest WebSocket message accepted from a client, in bytes")
	fs.DurationVar(&s.WriteTimeout, "write-timeout", 10*time.Second, "deadline for writing one frame to a client")
	fs.IntVar(&s.QueueSize, "queue-size", 256, "frames queued per connection before a slow client is closed")
	fs.IntVar(&s.QueueBytes, "queue-bytes", 1<<20, "bytes queued per WebSocket connection before a slow client is closed (1013; it resumes from its cursor)")
	fs.IntVar(&s.MaxResultBytes, "max-result-bytes", 5<<20, "largest query result sent over a WebSocket or SSE, in bytes (RESULT_TOO_LARGE beyond)")
	fs.DurationVar(&s.InitTimeout, "init-timeout", 3*time.Second, "time a WebSocket client has to send connection_init")
	fs.IntVar(&s.MaxSubscriptions, "max-subscriptions", 100, "subscriptions per WebSocket connection")
}
