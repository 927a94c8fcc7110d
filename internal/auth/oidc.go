package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig says which bearer tokens to trust.
type OIDCConfig struct {
	// Issuer is discovered at start (/.well-known/openid-configuration);
	// its signing keys are fetched from jwks_uri, cached, and fetched again
	// when a token names a key not seen before (rotation).
	Issuer   string
	Audience string
	// UserClaim names the user for session ownership ("sub" by default).
	UserClaim string
	// Skew is the clock difference tolerated on exp and nbf.
	Skew time.Duration
}

// OIDC verifies JWT bearer tokens from one issuer.
type OIDC struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
	now      func() time.Time
}

// NewOIDC discovers the issuer.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if cfg.Audience == "" {
		return nil, errors.New("an OIDC audience is required")
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover issuer %s: %w", cfg.Issuer, err)
	}
	o := &OIDC{cfg: cfg, now: time.Now}
	o.verifier = provider.VerifierContext(context.WithoutCancel(ctx), &oidc.Config{
		ClientID: cfg.Audience,
		// Expiry is checked against a clock set back by the skew.
		Now: func() time.Time { return o.now().Add(-cfg.Skew) },
	})
	return o, nil
}

// Verify checks signature, iss, aud, exp and nbf and returns the principal.
func (o *OIDC) Verify(ctx context.Context, token string) (*Principal, error) {
	idt, err := o.verifier.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("token claims: %w", err)
	}
	// go-oidc tolerates five minutes on nbf; we tolerate only the skew.
	if nbf, ok := claims["nbf"].(float64); ok && time.Unix(int64(nbf), 0).After(o.now().Add(o.cfg.Skew)) {
		return nil, errors.New("token not valid yet")
	}
	user, _ := claims[o.cfg.UserClaim].(string)
	if user == "" {
		return nil, fmt.Errorf("token lacks the %q claim", o.cfg.UserClaim)
	}
	return &Principal{ID: "user:" + user, Kind: Client, Expires: idt.Expiry}, nil
}
