package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Three tokencast processes, each embedding a NATS node, form one JetStream
// cluster through routes: a question asked on one node is answered to a
// subscriber on another, with every stream replicated three times.
func TestEmbeddedNodesFormACluster(t *testing.T) {
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats://"+r)
	}
	var nodes []*proc
	for i, r := range routes {
		nodes = append(nodes, spawnNoWait(t, "--data-dir", t.TempDir(), "--replicas", "3",
			"--nats-cluster-listen", r, "--nats-routes", strings.Join(urls, ","),
			"--nats-cluster-name", "tc-test", "--nats-server-name", fmt.Sprintf("node-%d", i),
			"--demo-ttft", "0", "--demo-token-interval", "2ms"))
	}
	for i, n := range nodes {
		if err := n.ready(60 * time.Second); err != nil {
			for j, m := range nodes {
				t.Logf("node-%d's log:\n%s", j, lastLines(m.out.String(), 30))
			}
			t.Fatalf("node-%d: %v", i, err)
		}
	}
	c := subscribed(t, nodes[1].client(), "s-cluster", nil)
	req := nodes[0].client().ask(t, "", "s-cluster", "across nodes", "en")
	checkAnswer(t, c.answer("1", req), req, demoAnswer("en", "across nodes"))
	turns := nodes[2].client().conversation(t, "", "s-cluster")
	if len(turns) != 2 || turns[1].Text != demoAnswer("en", "across nodes") {
		t.Fatalf("conversation read on a third node: %+v", turns)
	}
}
