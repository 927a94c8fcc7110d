package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

// NATS is the bus: an external NATS to connect to or the embedded one and
// its cluster, and what its streams keep and redeliver.
type NATS struct {
	// URL names an external NATS cluster; empty embeds NATS.
	URL   string
	Creds string
	NKey  string
	CA    string
	Cert  string
	Key   string

	Listen string
	// Unauthenticated allows, in production mode, the embedded NATS to
	// listen on --nats-listen or --nats-cluster-listen without
	// authentication.
	Unauthenticated bool
	// The embedded NATS joins a cluster of its peers when these are set.
	ClusterListen string
	Routes        string
	ClusterName   string
	ServerName    string

	DataDir        string
	Replicas       int
	EventRetention time.Duration
	SessionTTL     time.Duration
	MaxDeliver     int
	AckWait        time.Duration
}

func (n *NATS) flags(fs *flag.FlagSet) {
	fs.StringVar(&n.DataDir, "data-dir", "./data", "directory for the embedded NATS JetStream store (conversations, requests, events)")
	fs.DurationVar(&n.EventRetention, "event-retention", 24*time.Hour, "how long a session's events stay replayable for late joiners")
	fs.DurationVar(&n.SessionTTL, "session-ttl", 30*24*time.Hour, "a conversation's turns are kept this long, and a session unused for twice as long is free again, with nothing of it left (0: forever)")
	fs.IntVar(&n.MaxDeliver, "max-deliver", 5, "how often one request may be handed to a worker")
	fs.StringVar(&n.URL, "nats-url", "", "comma-separated URLs of an external NATS cluster; empty embeds NATS in this process")
	fs.StringVar(&n.Creds, "nats-creds", "", "credentials file for the external NATS")
	fs.StringVar(&n.NKey, "nats-nkey", "", "NKey seed file for the external NATS")
	fs.StringVar(&n.CA, "nats-ca", "", "CA certificate file to verify the external NATS's TLS")
	fs.StringVar(&n.Cert, "nats-cert", "", "PEM client certificate file for an external NATS that verifies clients (mutual TLS; needs --nats-key)")
	fs.StringVar(&n.Key, "nats-key", "", "PEM private key file for --nats-cert")
	fs.StringVar(&n.Listen, "nats-listen", "", "let other processes (workers) connect to the embedded NATS on host:port")
	fs.BoolVar(&n.Unauthenticated, "nats-unauthenticated", false, "production mode: let the embedded NATS listen (--nats-listen, --nats-cluster-listen) although it has no authentication; anyone who reaches those ports reads and writes every conversation, so firewall them")
	fs.StringVar(&n.ClusterListen, "nats-cluster-listen", "", "embedded NATS: accept cluster routes from its peers on host:port (joins a JetStream cluster; needs --nats-routes)")
	fs.StringVar(&n.Routes, "nats-routes", "", "embedded NATS: comma-separated route URLs of the cluster's nodes (nats://host:port, its own may be listed)")
	fs.StringVar(&n.ClusterName, "nats-cluster-name", "tokencast", "embedded NATS: cluster name, the same on every node")
	fs.StringVar(&n.ServerName, "nats-server-name", "", "embedded NATS: this node's name, unique and stable across restarts (default: the host name)")
	fs.IntVar(&n.Replicas, "replicas", 1, "replicas of every stream (3 in a cluster)")
	fs.DurationVar(&n.AckWait, "ack-wait", 30*time.Second, "a request whose worker shows no sign of life for this long is handed to another worker")
}

// validate checks that the bus is either external or embedded, with the
// settings each needs.
func (n NATS) validate() []error {
	var errs []error
	if n.URL != "" && (n.Listen != "" || n.ClusterListen != "" || n.Routes != "") {
		errs = append(errs, errors.New("--nats-url connects to an external NATS: --nats-listen, --nats-cluster-listen and --nats-routes are for the embedded one"))
	}
	errs = append(errs, n.validateFiles()...)
	if (n.ClusterListen == "") != (n.Routes == "") {
		errs = append(errs, errors.New("--nats-cluster-listen and --nats-routes go together"))
	}
	if n.Replicas < 1 || n.AckWait < time.Second {
		errs = append(errs, errors.New("--replicas must be at least 1 and --ack-wait at least 1s"))
	}
	return errs
}

// validateFiles checks the files that authenticate to an external NATS at
// start, naming the flag, rather than at the first connection attempt.
func (n NATS) validateFiles() []error {
	var errs []error
	if (n.Cert == "") != (n.Key == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	files := []struct{ flag, path string }{
		{"--nats-creds", n.Creds}, {"--nats-nkey", n.NKey}, {"--nats-ca", n.CA},
		{"--nats-cert", n.Cert}, {"--nats-key", n.Key},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if n.URL == "" {
			errs = append(errs, fmt.Errorf("%s is for an external NATS: it needs --nats-url", f.flag))
			continue
		}
		if err := readable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errs
}

// readable reports why path cannot be read as a file, if it cannot.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}
