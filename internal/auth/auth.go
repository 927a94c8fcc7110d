// Package auth turns credentials into principals: who is calling, and what
// they may do.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Kind is what a principal may do.
type Kind int

// Principal kinds.
const (
	// Client principals ask questions and subscribe to their sessions.
	Client Kind = iota + 1
	// Service principals also publish into sessions with sendMessage.
	Service
)

// Principal is an authenticated caller.
type Principal struct {
	// ID names the caller for ownership, limits and logs: "key:<name>" for
	// an API key, "user:<claim>" for a bearer token, "dev" in open mode.
	ID   string
	Kind Kind
	// Expires is when the credential stops being valid; zero for never.
	Expires time.Time
	// Public marks a key that is public by design (embedded in a browser
	// app's JavaScript): every visitor of the site holds it, so its limits
	// count per client address (see LimitKey).
	Public bool
}

// IsService reports whether p may publish into sessions.
func (p *Principal) IsService() bool { return p != nil && p.Kind == Service }

// Credentials are what a caller presented.
type Credentials struct {
	APIKey string
	// Authorization is a bearer token, with or without the "Bearer " prefix
	// (AppSync clients send the bare token).
	Authorization string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

type key struct {
	hash      [32]byte
	principal *Principal
}

// Keys checks API keys. Only their SHA-256 hashes are kept in memory.
type Keys struct {
	keys []key
}

// ParseKeys reads comma-separated keys, each "name:secret" or a bare secret
// (named key-N), for principals of the given kind. A secret written
// "sha256:<64 hex digits>" is the hash of the key, so a config file need not
// hold the key itself (make one with: printf %s "$KEY" | sha256sum).
func ParseKeys(list string, kind Kind) (*Keys, error) {
	k := &Keys{}
	return k, k.Add(list, kind)
}

// Add adds keys from a list as ParseKeys reads it.
func (k *Keys) Add(list string, kind Kind) error { return k.add(list, kind, false) }

// AddPublic adds client keys that are public by design (browser-embedded):
// the same list syntax, named "key:<name>" as other client keys, with
// limits per client address.
func (k *Keys) AddPublic(list string) error { return k.add(list, Client, true) }

func (k *Keys) add(list string, kind Kind, public bool) error {
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, secret, ok := strings.Cut(item, ":")
		if !ok {
			name, secret = fmt.Sprintf("key-%d", i+1), item
		}
		var h [32]byte
		if hexHash, ok := strings.CutPrefix(secret, "sha256:"); ok {
			b, err := hex.DecodeString(hexHash)
			if err != nil || len(b) != len(h) {
				return fmt.Errorf("key %q: sha256: wants 64 hex digits", name)
			}
			copy(h[:], b)
		} else {
			if len(secret) < 16 {
				return fmt.Errorf("key %q is shorter than 16 characters", name)
			}
			h = sha256.Sum256([]byte(secret))
		}
		prefix := "key:"
		if kind == Service {
			prefix = "service:"
		}
		k.keys = append(k.keys, key{hash: h, principal: &Principal{ID: prefix + name, Kind: kind, Public: public}})
	}
	return nil
}

// Len reports how many keys are configured.
func (k *Keys) Len() int { return len(k.keys) }

// Lookup returns the principal of a presented key, or nil. Every configured
// key is compared in constant time, so timing tells nothing of which matched.
func (k *Keys) Lookup(secret string) *Principal {
	if secret == "" {
		return nil
	}
	h := sha256.Sum256([]byte(secret))
	var found *Principal
	for _, c := range k.keys {
		if subtle.ConstantTimeCompare(h[:], c.hash[:]) == 1 {
			found = c.principal
		}
	}
	return found
}

// TokenVerifier checks a bearer token.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*Principal, error)
}

// Authenticator decides who a caller is.
type Authenticator struct {
	keys   *Keys
	tokens TokenVerifier // nil when no issuer is configured
	open   bool
}

// DevPrincipal is every caller in open development mode.
var DevPrincipal = &Principal{ID: "dev", Kind: Client}

// NewAuthenticator returns an authenticator over client and service keys and
// bearer tokens (tokens may be nil). With neither client keys nor tokens the
// server is open (development mode): a caller without valid credentials is
// DevPrincipal, and only service keys still mean more.
func NewAuthenticator(clients, services *Keys, tokens TokenVerifier) *Authenticator {
	all := &Keys{keys: append(append([]key(nil), clients.keys...), services.keys...)}
	return &Authenticator{keys: all, tokens: tokens, open: clients.Len() == 0 && tokens == nil}
}

// Open reports whether no credentials are required.
func (a *Authenticator) Open() bool { return a.open }

// ErrUnauthenticated says the credentials were missing or wrong.
var ErrUnauthenticated = fmt.Errorf("missing or invalid API key")

// Authenticate returns the principal for presented credentials: a bearer
// token when one is presented (a bad token is refused, never ignored), else
// an API key. In open mode missing credentials are the dev principal, but a
// key still has to be valid to count as a service.
func (a *Authenticator) Authenticate(ctx context.Context, c Credentials) (*Principal, error) {
	if tok := bearer(c.Authorization); tok != "" && a.tokens != nil {
		p, err := a.tokens.Verify(ctx, tok)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		return p, nil
	}
	if p := a.keys.Lookup(c.APIKey); p != nil {
		return p, nil
	}
	if a.open {
		return DevPrincipal, nil
	}
	return nil, ErrUnauthenticated
}

func bearer(h string) string {
	h = strings.TrimSpace(h)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return h
}
