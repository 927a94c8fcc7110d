package events

import (
	"errors"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns the channel namespace: which AppSync Events channel is
// which session, and the wildcards a subscriber may use.

// Namespace is tokencast's AppSync Events namespace: every channel starts
// with /tokencast/.
const Namespace = "tokencast"

// sessionsPrefix begins a session's channel: /tokencast/sessions/<sessionId>.
const sessionsPrefix = "/" + Namespace + "/sessions/"

// SessionChannel is the channel of a session's events.
func SessionChannel(session string) string { return sessionsPrefix + session }

// Refusals of a channel; each is a client's mistake with a message it may
// show.
var (
	// ErrBadChannel: the channel is not /tokencast/sessions/<sessionId>.
	ErrBadChannel = errors.New("the channel must be /" + Namespace + "/sessions/<sessionId>; a sessionId is 1 to 128 letters, digits, '-' or '_'")
	// ErrWildcard: a wildcard over more than one session. Sessions belong
	// to principals and the server does not list them, so a wildcard may
	// only name one session (…/<sessionId>/*).
	ErrWildcard = errors.New("a wildcard may only follow a session: /" + Namespace + "/sessions/<sessionId>/*; subscribe to each of your sessions")
	// ErrPublishWildcard: publishing goes to one channel.
	ErrPublishWildcard = errors.New("a publish names one channel, without a wildcard")
)

// maxChannelLen bounds a channel path (AppSync: 50 characters a segment,
// 5 segments); ours is the prefix and a session id.
const maxChannelLen = len(sessionsPrefix) + chat.MaxSessionIDLen + 2

// ParseChannel returns the session a channel names. The leading slash is
// optional (Amplify's events.connect sends the path as it was given). A
// trailing /* names the same session: its channel has no sub-channels, so
// the wildcard reaches nothing else. Any other wildcard is ErrWildcard;
// anything else not a session's channel is ErrBadChannel.
func ParseChannel(channel string) (session string, wildcard bool, err error) {
	if len(channel) > maxChannelLen {
		return "", false, ErrBadChannel
	}
	if !strings.HasPrefix(channel, "/") {
		channel = "/" + channel
	}
	if rest, ok := strings.CutSuffix(channel, "/*"); ok {
		channel, wildcard = rest, true
	}
	session, ok := strings.CutPrefix(channel, sessionsPrefix)
	switch {
	case ok && chat.ValidSessionID(session):
		return session, wildcard, nil
	case wildcard || strings.Contains(channel, "*"):
		return "", true, ErrWildcard
	default:
		return "", false, ErrBadChannel
	}
}
