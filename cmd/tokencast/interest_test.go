package main

import (
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// natsServer runs a JetStream NATS server in the test, so the test can read
// its subscription table while tokencast nodes use it as external NATS.
func natsServer(t *testing.T) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// liveInterest counts the NATS subscriptions that receive a session's live
// events, by the connection that holds them.
func liveInterest(t *testing.T, srv *natsserver.Server, session string) map[uint64]int {
	t.Helper()
	sz, err := srv.Subsz(&natsserver.SubszOptions{Subscriptions: true, Test: "tc.live." + session, Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]int{}
	for _, s := range sz.Subs {
		out[s.Cid]++
	}
	return out
}

// However many subscribers a session has on an API node, the node holds one
// NATS subscription for it; the subscribers share it.
func TestOneNATSInterestPerSessionPerAPINode(t *testing.T) {
	srv := natsServer(t)
	url := srv.ClientURL()
	a := start(t, "", nil, append([]string{"--role", "all", "--nats-url", url}, fast...)...)
	b := start(t, "", nil, "--role", "api", "--nats-url", url)
	const perNode = 40
	var (
		mu      sync.Mutex
		clients []*wsClient
	)
	for _, s := range []*server{a, b} {
		for range perNode {
			c := subscribed(t, s, "s-many", nil)
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
		}
	}
	interest := liveInterest(t, srv, "s-many")
	if len(interest) != 2 {
		t.Fatalf("%d connections subscribed to the session's live events (%v), want 2: one per API node", len(interest), interest)
	}
	for cid, n := range interest {
		if n != 1 {
			t.Fatalf("connection %d holds %d subscriptions for a session with %d local subscribers, want 1", cid, n, perNode)
		}
	}
	req := a.ask(t, "", "s-many", "one interest", "en")
	want := demoAnswer("en", "one interest")
	for i, c := range clients {
		evs := c.answer("1", req)
		if got := text(evs); got != want {
			t.Fatalf("subscriber %d got %q, want %q", i, got, want)
		}
	}
	// The last subscriber out releases the node's interest.
	for _, c := range clients {
		c.conn.CloseNow()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(liveInterest(t, srv, "s-many")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("interest left after every subscriber closed: %v", liveInterest(t, srv, "s-many"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
