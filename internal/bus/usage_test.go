package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokencast/tokencast/internal/chat"
)

// settled waits until no record is pending and returns the rollups of day.
func settled(t *testing.T, u *Usage, day time.Time) []chat.UsageRollup {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n, err := u.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records never folded", n)
		}
	}
	r, err := u.Rollups(ctx, day, day, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUsageFoldsEachCallOnce(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	u, err := b.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := newCollector[chat.UsageRecord]()
	stop, err := u.Fold(f.add)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	at := time.Date(2026, 3, 4, 23, 59, 0, 0, time.UTC)
	rec := chat.UsageRecord{SessionID: "s", RequestID: "r", Attempt: 1, Call: 1, Principal: "key:alice", Model: "openai:gpt",
		At: at, Usage: chat.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}, CostPicos: 7, Priced: true}
	// The same call twice (a retried publish), then the next attempt's
	// call, which counts: it was another provider call.
	for i, r := range []chat.UsageRecord{rec, rec, func() chat.UsageRecord { r := rec; r.Attempt = 2; return r }()} {
		fresh, err := u.Record(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if want := i != 1; fresh != want {
			t.Fatalf("record %d: fresh %v, want %v", i, fresh, want)
		}
	}
	// A folded record is reported after its ack: wait for the two (the
	// consumer's pending count may say 0 before it has seen them).
	if n := len(f.wait(t, 2)); n != 2 {
		t.Fatalf("folded reported %d records, want 2", n)
	}
	got := settled(t, u, at)
	if len(got) != 1 {
		t.Fatalf("rollups %+v, want one", got)
	}
	tot := got[0].Totals
	if got[0].Principal != "key:alice" || got[0].Model != "openai:gpt" || got[0].Day != "2026-03-04" ||
		tot.Calls != 2 || tot.InputTokens != 20 || tot.OutputTokens != 10 || tot.Cost.String() != "0.000000000014" {
		t.Fatalf("rollup %+v, want two calls", got[0])
	}
}

// A record delivered again after it was folded (its folder died before its
// ack) is not added twice: the rollup knows the newest record it holds.
func TestUsageRedeliveredRecordIsNotFoldedAgain(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	u, err := b.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 5, 1, 0, 0, 0, time.UTC)
	rec := chat.UsageRecord{SessionID: "s", RequestID: "r", Attempt: 1, Call: 1, Principal: "p", Model: "m", At: at,
		Usage: chat.Usage{InputTokens: 3, TotalTokens: 3}}
	if _, err := u.Record(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// Fold the record without acking it, as a folder that dies would.
	batch, err := u.folder.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if msg == nil {
		t.Fatal("no record delivered")
	}
	if _, applied, err := u.fold(ctx, msg); err != nil || !applied {
		t.Fatalf("fold: applied %v, %v", applied, err)
	}
	if err := msg.Nak(); err != nil { // delivered again at once
		t.Fatal(err)
	}
	stop, err := u.Fold(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	got := settled(t, u, at)
	if len(got) != 1 || got[0].Totals.Calls != 1 || got[0].Totals.InputTokens != 3 {
		t.Fatalf("rollups %+v, want the call once", got)
	}
}

// A call's note is written, updated and deleted without waiting, and
// lands in that order; an answer's open calls are its notes still there.
func TestOpenCallNotesFollowTheCall(t *testing.T) {
	b := open(t)
	ctx := context.Background()
	u, err := b.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	note := func(request string, attempt uint64, call, output int) chat.OpenCall {
		return chat.OpenCall{
			Record: chat.UsageRecord{SessionID: "s", RequestID: request, Attempt: attempt, Call: call, Model: "m",
				Usage: chat.Usage{InputTokens: 7, OutputTokens: output}, Estimated: true},
			Held: map[string]chat.Spent{"day.p.20260305": {Tokens: 7 + int64(output)}},
		}
	}
	closed, open := note("r", 1, 1, 0), note("r", 2, 1, 0)
	other := note("r2", 1, 1, 0) // another answer of the session
	for _, oc := range []chat.OpenCall{closed, open, other, note("r", 2, 1, 64)} {
		u.Note(oc)
	}
	u.Close(closed)
	// Nothing was waited for; the notes and the delete land in order.
	var got []chat.OpenCall
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, err = u.OpenCalls(ctx, "s", "r"); err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].Record.Usage.OutputTokens == 64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open calls of s.r: %+v, want attempt 2's call with 64 output tokens noted", got)
		}
	}
	if r := got[0].Record; r.Key() != open.Record.Key() || r.Usage.InputTokens != 7 || got[0].Held["day.p.20260305"].Tokens != 71 {
		t.Fatalf("open call %+v, want attempt 2's note as last written", got[0])
	}
	if none, err := u.OpenCalls(ctx, "s", "r3"); err != nil || len(none) != 0 {
		t.Fatalf("open calls of an answer without any: %+v, %v", none, err)
	}
}
