// The store's health: whether it takes writes, and what happens when it
// does not for lack of space (see storageFault).
//
// KV bucket TC_HEALTH, one key with one revision, written by the readiness
// check at most once a second; while writes fail for lack of space, probes
// also go to tc.ev.$probe and tc.turn.$probe (no session has that name).

package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokencast/tokencast/internal/chat"
)

// The health bucket holds one key, written by the readiness check to prove
// the store still takes writes.
const (
	healthBucket = "TC_HEALTH"
	healthKey    = "probe"
)

// minFreeBytes is the space under which the embedded server's data dir
// counts as full: JetStream writes blocks of up to megabytes at a time.
const minFreeBytes = 1 << 20

// probeEvery bounds how often the readiness check writes its probe, however
// often /readyz is asked.
const probeEvery = time.Second

// probeTimeout is how long the probe write may wait for its acknowledgement:
// a JetStream that cannot store a message does not answer at all.
const probeTimeout = 1500 * time.Millisecond

// storageProbe remembers the latest write probe.
type storageProbe struct {
	mu  sync.Mutex
	at  time.Time
	err error
	// full is the latest probe's failure for lack of space, read without
	// waiting for a probe under way.
	full atomic.Pointer[error]
}

// spaceLeft says whether the embedded server's data dir has room to write;
// nil when NATS is external (its servers' disks are not ours to read) or the
// platform cannot tell.
func (b *Bus) spaceLeft() error {
	if b.srv == nil {
		return nil
	}
	free, ok := freeBytes(b.cfg.DataDir)
	if !ok || free >= minFreeBytes {
		return nil
	}
	return fmt.Errorf("%w: data dir %s has %d bytes free", chat.ErrStorageFull, b.cfg.DataDir, free)
}

// storageFault marks err as chat.ErrStorageFull when the store failed for
// lack of space: the embedded server's disk is full, or a NATS server said
// it has no space or resources left. Any other failure (a lost connection,
// a leader election) is left as it is, to be retried.
//
// Once a write failed that way, every failed write counts as one until the
// store takes writes again (see fault): JetStream refuses all writes to a
// stream after a failed one, with no answer at all, until it restarts.
func (b *Bus) storageFault(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case errors.Is(err, chat.ErrStorageFull):
	case strings.Contains(msg, "no space left") || strings.Contains(msg, "insufficient resources"):
		err = fmt.Errorf("%w: %w", chat.ErrStorageFull, err)
	default:
		if full := b.spaceLeft(); full != nil {
			err = fmt.Errorf("%w (%w)", err, full)
		} else if f := b.fault.Load(); f != nil {
			return fmt.Errorf("%w (%w)", err, *f)
		} else {
			return err
		}
	}
	b.noteFault(err)
	return err
}

// storageFault is why writes fail for lack of space, from the first such
// failure until the events and turns streams take a write again.
type storageFault struct {
	since time.Time
	err   error
}

func (f *storageFault) Error() string {
	return fmt.Sprintf("writes have failed for lack of space since %s (%v); once space is freed, a store that still refuses writes needs a restart", f.since.Format(time.RFC3339), f.err)
}

func (f *storageFault) Unwrap() error { return chat.ErrStorageFull }

// noteFault remembers the first write that failed for lack of space, and
// starts probing for the store's recovery.
func (b *Bus) noteFault(err error) {
	var f error = &storageFault{since: time.Now().UTC(), err: err}
	if !b.fault.CompareAndSwap(nil, &f) {
		return
	}
	b.log.Error("the store refuses writes for lack of space; answers end with STORAGE_UNAVAILABLE and asks are refused until it takes writes again", "err", err)
	b.keeperWG.Go(b.awaitRecovery)
}

// awaitRecovery writes a probe to the events and turns streams every
// recoveryProbeEvery until both take it, then clears the fault.
func (b *Bus) awaitRecovery() {
	tick := time.NewTicker(recoveryProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.keeperDone:
			return
		case <-tick.C:
		}
		if b.spaceLeft() != nil {
			continue
		}
		if err := b.probeStreams(); err != nil {
			b.log.Debug("the store does not take writes yet", "err", err)
			continue
		}
		b.fault.Store(nil)
		b.log.Info("the store takes writes again")
		return
	}
}

// recoveryProbeEvery is how often a store that failed for lack of space is
// tried again.
const recoveryProbeEvery = 2 * time.Second

// probeSession names the probes' subjects in the events and turns streams:
// no session can have it ('$' is not allowed in a session id).
const probeSession = "$probe"

// probeStreams writes a probe to the streams every answer writes to.
func (b *Bus) probeStreams() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	data := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	// Through the events' publisher, so a solo node's acks stay gap-free.
	if _, err := b.publishEvent(ctx, eventSubject(probeSession), data, "", ""); err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	if _, err := b.js.Publish(ctx, turnSubject(probeSession), data); err != nil {
		return fmt.Errorf("turns stream: %w", err)
	}
	return nil
}

// Writable reports whether the store takes writes: the data dir has room and
// a probe write is acknowledged. The probe runs at most once per probeEvery;
// callers in between get its result.
func (b *Bus) Writable(ctx context.Context) error {
	if err := b.Full(); err != nil {
		return err
	}
	b.probe.mu.Lock()
	defer b.probe.mu.Unlock()
	if !b.probe.at.IsZero() && time.Since(b.probe.at) < probeEvery {
		return b.probe.err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := b.health.Put(ctx, healthKey, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	if err != nil {
		err = b.storageFault(fmt.Errorf("the store does not take a write: %w", err))
	}
	b.probe.at, b.probe.err = time.Now(), err
	if errors.Is(err, chat.ErrStorageFull) {
		b.probe.full.Store(&err)
	} else {
		b.probe.full.Store(nil)
	}
	return err
}

// Full says whether the store is known to have no space left, without
// writing anything: the data dir's free space, or the latest write probe.
func (b *Bus) Full() error {
	if err := b.spaceLeft(); err != nil {
		return err
	}
	if f := b.fault.Load(); f != nil {
		return *f
	}
	if err := b.probe.full.Load(); err != nil {
		return *err
	}
	return nil
}

// healthConfig is the health bucket: one key, one revision.
func (b *Bus) healthConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:   healthBucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	}
}

// unstoredHeader marks an event announced on the live subject without being
// stored: it has no position in the history.
const unstoredHeader = "Tc-Unstored"

// Announce delivers ev to the session's watchers on every node without
// storing it: the way an answer whose events can no longer be stored still
// ends visibly. The event has no position (Seq 0) and no resume cursor; a
// subscriber that was not watching never sees it.
func (b *Bus) Announce(ev chat.Event) error {
	if b.solo {
		b.announceLocal(ev)
		return nil
	}
	data, err := encodeEvent(&ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	m := nats.NewMsg(livePrefix + ev.SessionID)
	m.Header.Set(unstoredHeader, "1")
	m.Data = data
	if err := b.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("announce %s event for %s: %w", ev.Type, ev.SessionID, err)
	}
	return nil
}

// deliverUnstored hands a watcher an announced event; w.mu is held. The
// watch's position does not move: the event has none.
func (b *Bus) deliverUnstored(w *watch, data []byte) {
	ev, err := decodeEvent(data, 0)
	if err != nil {
		b.log.Error("undecodable event", "session", w.session, "err", err)
		return
	}
	if ev.Type.Terminal() {
		w.midAnswer = false
	}
	w.fn(ev)
}

// setupHealth creates the health bucket.
func (b *Bus) setupHealth(ctx context.Context) (err error) {
	if b.health, err = b.js.CreateOrUpdateKeyValue(ctx, b.healthConfig()); err != nil {
		return fmt.Errorf("create bucket %s: %w", healthBucket, err)
	}
	return nil
}
