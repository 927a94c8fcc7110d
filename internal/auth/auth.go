// Package auth turns credentials into principals: who is calling, and what
// they may do.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
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
	// ID names the caller: the key's name, or "dev" in open mode.
	ID   string
	Kind Kind
}

// IsService reports whether p may publish into sessions.
func (p *Principal) IsService() bool { return p != nil && p.Kind == Service }

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
// (named key-N), for principals of the given kind.
func ParseKeys(list string, kind Kind) (*Keys, error) {
	k := &Keys{}
	return k, k.Add(list, kind)
}

// Add adds keys from a list as ParseKeys reads it.
func (k *Keys) Add(list string, kind Kind) error {
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, secret, ok := strings.Cut(item, ":")
		if !ok {
			name, secret = fmt.Sprintf("key-%d", i+1), item
		}
		if len(secret) < 16 {
			return fmt.Errorf("key %q is shorter than 16 characters", name)
		}
		prefix := "client:"
		if kind == Service {
			prefix = "service:"
		}
		k.keys = append(k.keys, key{hash: sha256.Sum256([]byte(secret)), principal: &Principal{ID: prefix + name, Kind: kind}})
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

// Authenticator decides who a caller is.
type Authenticator struct {
	keys *Keys
	open bool
}

// DevPrincipal is every caller in open development mode.
var DevPrincipal = &Principal{ID: "dev", Kind: Client}

// NewAuthenticator returns an authenticator over client and service keys.
// With no client keys the server is open (development mode): a caller without
// a valid key is DevPrincipal, and only service keys still mean more.
func NewAuthenticator(clients, services *Keys) *Authenticator {
	all := &Keys{keys: append(append([]key(nil), clients.keys...), services.keys...)}
	return &Authenticator{keys: all, open: clients.Len() == 0}
}

// Open reports whether no credentials are required.
func (a *Authenticator) Open() bool { return a.open }

// ErrUnauthenticated says the credentials were missing or wrong.
var ErrUnauthenticated = fmt.Errorf("missing or invalid API key")

// Authenticate returns the principal for a presented API key. In open mode a
// missing key is the dev principal, but a presented key still has to be valid
// to count as a service.
func (a *Authenticator) Authenticate(apiKey string) (*Principal, error) {
	if p := a.keys.Lookup(apiKey); p != nil {
		return p, nil
	}
	if a.open {
		return DevPrincipal, nil
	}
	return nil, ErrUnauthenticated
}
