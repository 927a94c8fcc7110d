package stream

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/hub"
	"github.com/tokencast/tokencast/internal/ratelimit"
)

var discard = slog.New(slog.DiscardHandler)

func newPolicy(cfg Config) *Policy {
	clients, _ := auth.ParseKeys("alice:key-alice-0123456789", auth.Client)
	services, _ := auth.ParseKeys("", auth.Service)
	return NewPolicy(cfg, auth.NewAuthenticator(clients, services, nil), discard)
}

// The caps hold across every connection of the node, whatever the
// transport: a pending slot until a connection authenticates, then one of
// the node's and one of its principal's, all given back when it ends.
func TestLeasesHoldTheCaps(t *testing.T) {
	ctx := context.Background()
	conns := ratelimit.NewConns(2, 1).WithPending(1, 1)
	p := newPolicy(Config{Conns: conns})
	here, there := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	alice, bob, carol := &auth.Principal{ID: "alice"}, &auth.Principal{ID: "bob"}, &auth.Principal{ID: "carol"}

	first, err := p.Pending(ctx, here, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pending(ctx, here, ""); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("a second unauthenticated connection from one address: %v, want ErrPendingFull", err)
	}
	if err := first.Admit(ctx, alice); err != nil {
		t.Fatal(err)
	}
	again, err := p.Pending(ctx, here, "")
	if err != nil {
		t.Fatalf("authenticating gave the pending slot back, yet: %v", err)
	}
	if err := again.Admit(ctx, alice); !errors.Is(err, ErrPrincipalFull) {
		t.Fatalf("alice's second connection: %v, want ErrPrincipalFull", err)
	}
	again.Release()

	// Authenticating again keeps the slot, or trades it for the new
	// principal's.
	if err := first.Admit(ctx, alice); err != nil {
		t.Fatalf("alice again on her own connection: %v", err)
	}
	if err := first.Admit(ctx, bob); err != nil {
		t.Fatalf("bob on alice's connection: %v", err)
	}
	second := p.Lease(there, "")
	if err := second.Admit(ctx, alice); err != nil {
		t.Fatalf("alice's slot was not given back when her connection became bob's: %v", err)
	}

	// Two connections fill the node.
	if err := p.Lease(there, "").Admit(ctx, carol); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("a third connection: %v, want ErrNodeFull", err)
	}
	if _, err := p.Pending(ctx, there, ""); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("an upgrade on a full node: %v, want ErrNodeFull", err)
	}

	// Ending gives everything back, once.
	first.Release()
	first.Release()
	second.Release()
	for _, pr := range []*auth.Principal{alice, bob} {
		l := p.Lease(here, "")
		if err := l.Admit(ctx, pr); err != nil {
			t.Fatalf("after every connection ended, %s: %v", pr.ID, err)
		}
		defer l.Release()
	}
	// A caller without a principal holds a node slot only.
	if err := p.Lease(here, "").Admit(ctx, nil); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("a third connection without a principal: %v, want ErrNodeFull", err)
	}
}

// A stream ends when its token does, after the grace; a token without an
// expiry never ends it.
func TestAStreamEndsWithItsToken(t *testing.T) {
	p := newPolicy(Config{TokenGrace: time.Millisecond})
	ended := make(chan struct{})
	if timer := p.Expire(&auth.Principal{ID: "alice", Expires: time.Now().Add(-time.Second)}, func() { close(ended) }); timer == nil {
		t.Fatal("no timer for an expiring token")
	}
	<-ended
	if timer := p.Expire(&auth.Principal{ID: "key"}, func() { t.Error("a token without expiry ended its stream") }); timer != nil {
		t.Fatal("a timer for a token that does not expire")
	}
}

func TestOrigins(t *testing.T) {
	p := newPolicy(Config{AllowedOrigins: []string{"https://app.example"}})
	any := newPolicy(Config{AllowedOrigins: []string{"*"}})
	for _, tc := range []struct {
		name, origin string
		policy       *Policy
		stream, cors bool
	}{
		{"no origin (not a browser)", "", p, true, false},
		{"the server's own page", "http://tokencast.test", p, true, false},
		{"an allowed origin", "https://APP.example", p, true, true},
		{"another site", "https://evil.example", p, false, false},
		{"any, when configured", "https://evil.example", any, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://tokencast.test/graphql", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := tc.policy.CheckOrigin(r, "test"); got != tc.stream {
				t.Errorf("CheckOrigin = %v, want %v", got, tc.stream)
			}
			if got := tc.policy.AllowedOrigin(tc.origin); got != tc.cors {
				t.Errorf("AllowedOrigin = %v, want %v", got, tc.cors)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	p := newPolicy(Config{})
	ctx, addr := context.Background(), netip.MustParseAddr("192.0.2.1")
	if pr, err := p.Authenticate(ctx, auth.Credentials{APIKey: "key-alice-0123456789"}, addr, ""); err != nil || pr.ID != "key:alice" {
		t.Fatalf("alice's key: %v %v", pr, err)
	}
	if _, err := p.Authenticate(ctx, auth.Credentials{APIKey: "key-mallory-0123456789"}, addr, ""); err == nil {
		t.Fatal("an unknown key was accepted")
	}
}

// A live event never waits: a connection that cannot take one is closed as
// a slow consumer. History waits for room, up to its timeout.
func TestASinkNeverBlocksTheHub(t *testing.T) {
	closing := make(chan struct{})
	slow := make(chan struct{}, 4)
	q := &Queue{
		Out: NewOutbox(1, 0, func() {}), Closing: closing, ReplayTimeout: time.Hour,
		Slow: func() { slow <- struct{}{} },
	}
	sink := Sink{Queue: q, Frame: func(sh *hub.Shared) []byte { return []byte(sh.Event.Message) }}
	event := func(msg string) *hub.Shared {
		sh := &hub.Shared{}
		sh.Event.Message = msg
		return sh
	}
	if !sink.Deliver(event("a")) {
		t.Fatal("the first event was refused")
	}
	if sink.Deliver(event("b")) || len(slow) != 1 {
		t.Fatal("an event over the queue was taken, or the connection not closed as slow")
	}

	// A writer takes the queued frame while history waits for room.
	replayed := make(chan error, 1)
	go func() { replayed <- sink.Replay(context.Background(), event("c")) }()
	batch, _ := q.Out.Next()
	if err := <-replayed; err != nil || len(batch) != 1 || string(batch[0]) != "a" {
		t.Fatalf("replay: %v after the writer took %q", err, batch)
	}
	// History that finds no room in time closes the connection.
	q.ReplayTimeout = time.Millisecond
	if err := sink.Replay(context.Background(), event("d")); !errors.Is(err, ErrClosed) || len(slow) != 2 {
		t.Fatalf("a replay that never found room: %v", err)
	}
	close(closing)
	if sink.Deliver(event("e")) {
		t.Fatal("an event was queued on a closing connection")
	}
}
