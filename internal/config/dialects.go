package config

import (
	"flag"
	"time"
)

// Dialects is what the WebSocket dialects announce and accept beyond the
// common stream settings.
type Dialects struct {
	// KeepAlive is how often graphql-ws (AppSync, legacy Apollo) sends "ka".
	KeepAlive time.Duration
	AppSync   AppSync
}

// AppSync is the settings of the AWS AppSync dialect.
type AppSync struct {
	MaxPayload        int
	ConnectionTimeout time.Duration
}

func (d *Dialects) flags(fs *flag.FlagSet) {
	fs.IntVar(&d.AppSync.MaxPayload, "appsync-max-payload", 240<<10, "AppSync dialect and AppSync Events: largest subscription payload (start message or event sent), in bytes")
	fs.DurationVar(&d.KeepAlive, "ws-keepalive", 20*time.Second, "graphql-ws (AppSync, legacy Apollo) and AppSync Events: how often a \"ka\" keep-alive is sent")
	fs.DurationVar(&d.AppSync.ConnectionTimeout, "appsync-connection-timeout", 5*time.Minute, "AppSync dialect and AppSync Events: connectionTimeoutMs announced in connection_ack (clients reconnect after this long without a ka)")
}
