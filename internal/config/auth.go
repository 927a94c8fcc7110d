package config

import (
	"flag"
	"time"
)

// Auth is who may use the server: keys, bearer tokens and signed requests.
type Auth struct {
	OIDC OIDC
	// TokenGrace is how long a WebSocket outlives its token's expiry.
	TokenGrace   time.Duration
	SigV4MaxSkew time.Duration

	// Secrets come from the environment only, so they never show in ps.
	APIKeys     string
	PublicKeys  string
	ServiceKeys string
	SigV4Keys   string
}

// OIDC is the issuer whose JWT bearer tokens are accepted.
type OIDC struct {
	Issuer    string
	Audience  string
	UserClaim string
	Skew      time.Duration
}

func (a *Auth) flags(fs *flag.FlagSet) {
	fs.StringVar(&a.OIDC.Issuer, "oidc-issuer", "", "issuer URL whose JWT bearer tokens are accepted (discovery and JWKS from it)")
	fs.StringVar(&a.OIDC.Audience, "oidc-audience", "", "audience (aud) a bearer token must carry")
	fs.StringVar(&a.OIDC.UserClaim, "oidc-user-claim", "sub", "token claim that names the user who owns sessions")
	fs.DurationVar(&a.OIDC.Skew, "oidc-skew", 30*time.Second, "clock skew tolerated on a token's exp and nbf")
	fs.DurationVar(&a.TokenGrace, "token-grace", 10*time.Second, "how long a WebSocket outlives its token's expiry before it is closed")
	fs.DurationVar(&a.SigV4MaxSkew, "sigv4-max-skew", 5*time.Minute, "SigV4-signed requests: largest accepted difference between X-Amz-Date and server time")
}

// secrets reads the keys, which only the environment sets.
func (a *Auth) secrets(getenv func(string) string) {
	a.APIKeys = getenv("TOKENCAST_API_KEYS")
	a.PublicKeys = getenv("TOKENCAST_PUBLIC_KEYS")
	a.ServiceKeys = getenv("TOKENCAST_SERVICE_KEYS")
	a.SigV4Keys = getenv("TOKENCAST_SIGV4_KEYS")
}
