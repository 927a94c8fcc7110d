// Package hub fans a session's events out to the subscribers on this node: one
// watch of the session's history per node however many local subscribers it
// has, each subscriber fed through a non-blocking sink.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Source is what the hub needs from the event history.
type Source interface {
	Watch(ctx context.Context, session string, fn func(chat.Event)) (stop func(), from uint64, err error)
	LastEvent(ctx context.Context, session string) (*chat.Event, error)
	ReplayEvents(ctx context.Context, session string, from, to uint64, fn func(chat.Event) error) error
	History(ctx context.Context) (first, last uint64, err error)
	// LatestTurn is the newest turn record of a session's conversation,
	// nil for none: a question asked after an answer shows there first.
	LatestTurn(ctx context.Context, session string) (*chat.Turn, error)
}

// Sink receives a subscriber's events. Deliver (live events) must not block:
// it returns false when the subscriber cannot keep up, and the hub then drops
// it. Replay (history, on the subscribing goroutine) may wait for room.
type Sink interface {
	Deliver(ev *Shared) bool
	Replay(ctx context.Context, ev *Shared) error
}

// Attacher is a Sink that wants to know the moment its subscription is live:
// Attached is called once live events are being collected for it and before
// anything is replayed, so an acknowledgement sent from it precedes every
// event and follows the point from which none is missed.
type Attacher interface {
	Attached()
}

// ErrHistoryGone says a resume cursor points before the oldest event kept.
var ErrHistoryGone = errors.New("event history no longer reaches the cursor")

// Shared is one event as fanned out to many subscribers. Encoded forms are
// cached by the encoder that made them, so an event is encoded once per
// selection shape, not once per subscriber.
type Shared struct {
	Event chat.Event

	mu    sync.Mutex
	cache []cached
}

type cached struct {
	key  any
	data []byte
}

// Encoded returns encode(ev), computed once for each distinct key.
func (s *Shared) Encoded(key any, encode func(*chat.Event) []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cache {
		if c.key == key {
			return c.data
		}
	}
	data := encode(&s.Event)
	s.cache = append(s.cache, cached{key, data})
	return data
}

// Hub is the node's fan-out.
type Hub struct {
	src Source
	log *slog.Logger
	// maxPending bounds the live events a subscriber may hold back while it
	// replays history.
	maxPending int
	// lateJoin is how long after an answer ended a subscriber without a
	// cursor is still replayed it, after lateGrace (see Subscribe).
	lateJoin  time.Duration
	lateGrace time.Duration
	now       func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
	wg       sync.WaitGroup // releases started from inside a watch callback
}

// Config tunes a hub.
type Config struct {
	// MaxPending bounds the live events a subscriber may hold back while it
	// replays history (default 1024).
	MaxPending int
	// LateJoinWindow is how long after an answer ended a new subscriber
	// without a cursor is still replayed it from its START: a client that
	// asks before its subscription is live (the AWS sample's UI does) must
	// not lose a fast answer. 0 replays only answers still in flight.
	LateJoinWindow time.Duration
	// LateJoinGrace is how long such a replay waits for the subscriber's
	// own question (default 2 s): a client that subscribes just before it
	// asks a follow-up must get the new answer, not the previous one again
	// (the AWS sample's UI subscribes anew for every question and stops
	// at the first #END_STREAM#).
	LateJoinGrace time.Duration
}

// New returns a hub reading from src.
func New(src Source, log *slog.Logger, cfg Config) *Hub {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1024
	}
	if cfg.LateJoinGrace <= 0 {
		cfg.LateJoinGrace = 2 * time.Second
	}
	return &Hub{src: src, log: log, maxPending: cfg.MaxPending, lateJoin: cfg.LateJoinWindow, lateGrace: cfg.LateJoinGrace,
		now: time.Now, sessions: make(map[string]*session)}
}

type session struct {
	id    string
	ready chan struct{} // closed once the watch is started (or failed)
	err   error
	stop  func()

	mu      sync.Mutex
	subs    map[*Subscriber]struct{}
	lastSeq uint64 // newest event position seen by this node
	from    uint64 // the history position the watch started after
	// attempts is the newest attempt seen live per request, so events of
	// a superseded attempt still running somewhere are not fanned out.
	attempts map[string]uint64
	// unstored is, per answer, the index of the last event announced
	// without being stored.
	unstored map[string]int
}

// Subscriber is one subscription attached to a session.
type Subscriber struct {
	hub  *Hub
	sess *session
	sink Sink

	// guarded by sess.mu
	replaying bool
	pending   []*Shared
	closed    bool
	// base is the newest history position dispatched before the subscriber
	// could receive live events: everything after it reaches it live (held
	// in pending while it replays), so replay must not go past it.
	base uint64
	// live is set once a live event has been delivered to the subscriber.
	live bool
	// late is the replay of an answer that had just ended when the
	// subscriber came, waiting for the grace to pass.
	late *time.Timer
}

// endedAnswer is the history range of an answer that ended within the
// late-join window.
type endedAnswer struct {
	request    string
	start, end uint64
}

// Subscribers reports how many subscriptions are attached on this node.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.sessions {
		s.mu.Lock()
		n += len(s.subs)
		s.mu.Unlock()
	}
	return n
}

// Sessions reports how many sessions have a watch on this node.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Subscribe attaches sink to a session. It first attaches to live events, then
// replays what the subscriber must not miss: everything after the cursor
// "after" when it is set, otherwise the answer in flight from its START (or
// the session's latest answer, if it ended less than the late-join window
// ago). Only then do live events flow, so nothing is lost, duplicated or
// reordered.
func (h *Hub) Subscribe(ctx context.Context, sessionID string, after *uint64, sink Sink) (*Subscriber, error) {
	sub := &Subscriber{hub: h, sink: sink, replaying: true}
	sess, err := h.attach(ctx, sessionID, sub)
	if err != nil {
		return nil, err
	}
	if a, ok := sink.(Attacher); ok {
		a.Attached()
	}
	sess.mu.Lock()
	upTo := sub.base
	// Replay skips events of superseded attempts, as live delivery does.
	newest := make(map[string]uint64, len(sess.attempts))
	for req, attempt := range sess.attempts {
		newest[req] = attempt
	}
	sess.mu.Unlock()

	if after != nil {
		// The client saw the event at its cursor: anything of an older
		// attempt of that answer is stale to it.
		_ = h.src.ReplayEvents(ctx, sessionID, *after, *after, func(ev chat.Event) error {
			chat.Stale(newest, &ev)
			return nil
		})
	}
	from, ended, err := h.replayStart(ctx, sessionID, after, upTo)
	if errors.Is(err, ErrHistoryGone) {
		// Say so instead of skipping silently, then go on from now.
		from, ended, err = upTo+1, nil, sink.Replay(ctx, &Shared{Event: chat.Event{
			Type: chat.EventResync, SessionID: sessionID, TimeStamp: time.Now().UTC(),
			Message: "history no longer reaches the cursor; reload the conversation",
		}})
	}
	if err != nil {
		sub.Close()
		return nil, err
	}
	last := from - 1
	if from <= upTo {
		err = h.src.ReplayEvents(ctx, sessionID, from, upTo, func(ev chat.Event) error {
			last = ev.Seq
			if chat.Stale(newest, &ev) {
				return nil
			}
			return sink.Replay(ctx, &Shared{Event: ev})
		})
		if err != nil {
			sub.Close()
			return nil, fmt.Errorf("replay %s: %w", sessionID, err)
		}
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for req, attempt := range newest {
		sess.attempts[req] = max(sess.attempts[req], attempt)
	}
	for _, sh := range sub.pending {
		if chat.Stale(newest, &sh.Event) {
			continue
		}
		if sh.Event.Seq != 0 && sh.Event.Seq <= last {
			continue
		}
		if !sink.Deliver(sh) {
			sub.detachLocked()
			return nil, errSlow
		}
		sub.live = true
	}
	sub.pending = nil
	sub.replaying = false
	if ended != nil && !sub.live {
		h.wg.Add(1)
		sub.late = time.AfterFunc(h.lateGrace, func() {
			defer h.wg.Done()
			h.replayEnded(sub, ended)
		})
	}
	return sub, nil
}

// replayEnded gives a subscriber the answer that had just ended when it
// subscribed, unless in the meantime it was sent a live event or a newer
// question was asked in the session: then the subscriber came for that one.
// Live events that come while it replays wait, as during Subscribe's replay.
func (h *Hub) replayEnded(sub *Subscriber, ended *endedAnswer) {
	sess := sub.sess
	sess.mu.Lock()
	if sub.closed || sub.live {
		sess.mu.Unlock()
		return
	}
	sub.replaying = true
	newest := make(map[string]uint64, len(sess.attempts))
	for req, attempt := range sess.attempts {
		newest[req] = attempt
	}
	sess.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	replay := true
	if ended.request != "" {
		turn, err := h.src.LatestTurn(ctx, sess.id)
		replay = err == nil && (turn == nil || turn.RequestID == ended.request)
	}
	var err error
	if replay {
		err = h.src.ReplayEvents(ctx, sess.id, ended.start, ended.end, func(ev chat.Event) error {
			if chat.Stale(newest, &ev) {
				return nil
			}
			return sub.sink.Replay(ctx, &Shared{Event: ev})
		})
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if err != nil {
		h.log.Debug("late-join replay", "session", sess.id, "err", err)
		sub.detachLocked()
		return
	}
	for _, sh := range sub.pending {
		if sub.closed {
			break
		}
		if !sub.sink.Deliver(sh) {
			sub.detachLocked()
			break
		}
		sub.live = true
	}
	sub.pending = nil
	sub.replaying = false
}

var errSlow = errors.New("subscriber queue overflowed during replay")

// replayStart decides the first history position a new subscriber replays.
// upTo is the newest position live delivery has covered for this node. An
// answer that ended within the late-join window is not replayed at once but
// returned as ended, for replayEnded after the grace.
func (h *Hub) replayStart(ctx context.Context, sessionID string, after *uint64, upTo uint64) (uint64, *endedAnswer, error) {
	if after != nil {
		first, _, err := h.src.History(ctx)
		if err != nil {
			return 0, nil, err
		}
		if *after+1 < first {
			return 0, nil, ErrHistoryGone
		}
		return *after + 1, nil, nil
	}
	last, err := h.src.LastEvent(ctx, sessionID)
	if err != nil {
		return 0, nil, err
	}
	if last == nil {
		return upTo + 1, nil, nil
	}
	start := last.AnswerStart()
	if start == 0 || start > upTo {
		return upTo + 1, nil, nil
	}
	// An answer is in flight if the newest event does not end it, or if it
	// ended after the point this node has delivered (its start may be before).
	if !last.Type.Terminal() || last.Seq > upTo {
		return start, nil, nil
	}
	// One that ended just now may be the subscriber's own: its asker may
	// have sent the question before subscribing.
	if h.endedRecently(last) {
		return upTo + 1, &endedAnswer{request: last.RequestID, start: start, end: last.Seq}, nil
	}
	return upTo + 1, nil, nil
}

// endedRecently reports whether ev ends an answer less than the late-join
// window ago.
func (h *Hub) endedRecently(ev *chat.Event) bool {
	return ev.Type.Terminal() && h.lateJoin > 0 && h.now().Sub(ev.TimeStamp) < h.lateJoin
}

// attach adds sub to the session's watch, starting the watch if this is the
// node's first subscriber of the session. The subscriber is registered before
// anything can release the session, so a watch is never stopped under it.
func (h *Hub) attach(ctx context.Context, id string, sub *Subscriber) (*session, error) {
	h.mu.Lock()
	sess, ok := h.sessions[id]
	if !ok {
		sess = &session{id: id, ready: make(chan struct{}), subs: make(map[*Subscriber]struct{}), attempts: make(map[string]uint64)}
		h.sessions[id] = sess
	}
	sub.sess = sess
	sess.mu.Lock()
	sess.subs[sub] = struct{}{}
	sub.base = sess.lastSeq
	sess.mu.Unlock()
	h.mu.Unlock()
	if !ok {
		sess.err = h.startWatch(ctx, sess)
		close(sess.ready)
	}
	select {
	case <-sess.ready:
	case <-ctx.Done():
		sub.Close()
		return nil, ctx.Err()
	}
	if sess.err != nil {
		sub.Close()
		return nil, sess.err
	}
	// Registered before the watch started: what came live came after its
	// start.
	sess.mu.Lock()
	sub.base = max(sub.base, sess.from)
	sess.mu.Unlock()
	return sess, nil
}

func (h *Hub) startWatch(ctx context.Context, sess *session) error {
	// The watch outlives the subscribe call that started it.
	stop, from, err := h.src.Watch(context.WithoutCancel(ctx), sess.id, func(ev chat.Event) {
		h.dispatch(sess, ev)
	})
	if err != nil {
		return err
	}
	sess.mu.Lock()
	sess.lastSeq = max(sess.lastSeq, from)
	sess.from = from
	sess.mu.Unlock()
	sess.stop = stop
	return nil
}

func (h *Hub) dispatch(sess *session, ev chat.Event) {
	sh := &Shared{Event: ev}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if ev.Seq == 0 {
		// Announced without being stored (the store is full): its
		// copies stored later, once there is space, are not sent again.
		if sess.unstored == nil {
			sess.unstored = make(map[string]int)
		}
		sess.unstored[ev.RequestID] = max(sess.unstored[ev.RequestID], ev.Index)
	} else {
		if ev.Seq <= sess.lastSeq {
			return
		}
		sess.lastSeq = ev.Seq
		if last, ok := sess.unstored[ev.RequestID]; ok && ev.Index <= last {
			if ev.Type.Terminal() {
				delete(sess.unstored, ev.RequestID)
			}
			return
		}
	}
	if chat.Stale(sess.attempts, &sh.Event) {
		return
	}
	for sub := range sess.subs {
		if sub.replaying {
			if len(sub.pending) >= h.maxPending {
				sub.detachLocked()
				continue
			}
			sub.pending = append(sub.pending, sh)
			continue
		}
		if !sub.sink.Deliver(sh) {
			sub.detachLocked()
			continue
		}
		sub.live = true
	}
}

// detachLocked removes the subscriber; sess.mu is held. The watch is stopped
// later, outside the lock, by whoever sees the session empty.
func (s *Subscriber) detachLocked() {
	if s.closed {
		return
	}
	s.closed = true
	s.stopLate()
	delete(s.sess.subs, s)
	if len(s.sess.subs) == 0 {
		// The caller may be the watch's own callback, which stop waits for.
		s.hub.wg.Add(1)
		go func() {
			defer s.hub.wg.Done()
			s.hub.release(s.sess)
		}()
	}
}

// Close detaches the subscriber; the last one out stops the session's watch.
func (s *Subscriber) Close() {
	s.sess.mu.Lock()
	wasOpen := !s.closed
	s.closed = true
	s.stopLate()
	delete(s.sess.subs, s)
	empty := len(s.sess.subs) == 0
	s.sess.mu.Unlock()
	if wasOpen && empty {
		s.hub.release(s.sess)
	}
}

// stopLate cancels a late-join replay still waiting for its grace; sess.mu
// is held.
func (s *Subscriber) stopLate() {
	if s.late != nil && s.late.Stop() {
		s.hub.wg.Done()
	}
}

// release stops a session's watch if it still has no subscribers.
func (h *Hub) release(sess *session) {
	h.mu.Lock()
	sess.mu.Lock()
	empty := len(sess.subs) == 0
	sess.mu.Unlock()
	if !empty || h.sessions[sess.id] != sess {
		h.mu.Unlock()
		return
	}
	delete(h.sessions, sess.id)
	h.mu.Unlock()
	<-sess.ready
	if sess.stop != nil {
		sess.stop()
	}
}

// Close stops every watch.
func (h *Hub) Close() {
	h.mu.Lock()
	sessions := h.sessions
	h.sessions = make(map[string]*session)
	h.mu.Unlock()
	for _, sess := range sessions {
		<-sess.ready
		if sess.stop != nil {
			sess.stop()
		}
		sess.mu.Lock()
		for sub := range sess.subs {
			sub.stopLate()
		}
		sess.mu.Unlock()
	}
	h.wg.Wait()
}
