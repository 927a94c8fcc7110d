package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SigV4Service is the signing name callers use, as they would for AppSync.
const SigV4Service = "appsync"

const (
	sigV4Algorithm  = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	sigV4Terminator = "aws4_request"
)

// SigV4 verifies requests signed with AWS Signature Version 4 for the
// appsync service against configured access-key/secret pairs: the signature
// is recomputed with the AWS SDK's signer over the same request and compared
// in constant time. A verified caller is a service principal, like the AWS
// sample's orchestrator publishing with sendMessage.
type SigV4 struct {
	keys    map[string]sigV4Key
	maxSkew time.Duration
	signer  *v4.Signer
	// now is the clock; tests may set it.
	now func() time.Time
}

type sigV4Key struct {
	secret    string
	principal *Principal
}

// ParseSigV4Keys reads comma-separated ACCESS_KEY_ID:SECRET pairs. maxSkew
// bounds how far X-Amz-Date may be from the server's clock.
func ParseSigV4Keys(list string, maxSkew time.Duration) (*SigV4, error) {
	s := &SigV4{keys: map[string]sigV4Key{}, maxSkew: maxSkew, signer: v4.NewSigner(), now: time.Now}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, secret, ok := strings.Cut(item, ":")
		if !ok || id == "" {
			return nil, errors.New("each SigV4 key is ACCESS_KEY_ID:SECRET")
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("the secret of %q is shorter than 16 characters", id)
		}
		if _, dup := s.keys[id]; dup {
			return nil, fmt.Errorf("access key %q is listed twice", id)
		}
		s.keys[id] = sigV4Key{secret: secret, principal: &Principal{ID: "sigv4:" + id, Kind: Service}}
	}
	return s, nil
}

// Len reports how many access keys are configured.
func (s *SigV4) Len() int { return len(s.keys) }

// IsSigV4 reports whether r carries a SigV4 Authorization header.
func IsSigV4(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), sigV4Algorithm+" ")
}

// ErrBadSignature says a SigV4 signature did not verify.
var ErrBadSignature = errors.New("the SigV4 signature does not verify")

// sigV4Auth is a parsed Authorization header.
type sigV4Auth struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

// parseSigV4Authorization reads
// "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/appsync/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=hex".
func parseSigV4Authorization(h string) (sigV4Auth, error) {
	rest, ok := strings.CutPrefix(h, sigV4Algorithm+" ")
	if !ok {
		return sigV4Auth{}, errors.New("not " + sigV4Algorithm)
	}
	var a sigV4Auth
	var credential, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.signature = v
		}
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[4] != sigV4Terminator || signed == "" || a.signature == "" {
		return sigV4Auth{}, errors.New("malformed Authorization")
	}
	a.accessKey, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	a.signedHeaders = strings.Split(signed, ";")
	return a, nil
}

// Verify checks r's signature over its body and returns the principal of its
// access key.
func (s *SigV4) Verify(ctx context.Context, r *http.Request, body []byte) (*Principal, error) {
	a, err := parseSigV4Authorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	key, ok := s.keys[a.accessKey]
	if !ok {
		return nil, fmt.Errorf("%w: unknown access key", ErrBadSignature)
	}
	if a.service != SigV4Service {
		return nil, fmt.Errorf("%w: signed for service %q, want %q", ErrBadSignature, a.service, SigV4Service)
	}
	signedAt, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, fmt.Errorf("%w: X-Amz-Date missing or malformed", ErrBadSignature)
	}
	if skew := s.now().Sub(signedAt); skew > s.maxSkew || skew < -s.maxSkew {
		return nil, fmt.Errorf("%w: X-Amz-Date is %s from server time", ErrBadSignature, skew.Round(time.Second))
	}
	if a.date != signedAt.Format("20060102") {
		return nil, fmt.Errorf("%w: credential scope date differs from X-Amz-Date", ErrBadSignature)
	}
	want, err := s.expected(ctx, r, body, a, key.secret, signedAt)
	if err != nil {
		return nil, err
	}
	got := r.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(canonicalAuthorization(got)), []byte(canonicalAuthorization(want))) != 1 {
		return nil, ErrBadSignature
	}
	return key.principal, nil
}

// expected signs a copy of r that holds only the headers the caller signed,
// and returns the Authorization header the SDK's signer makes for it.
func (s *SigV4) expected(ctx context.Context, r *http.Request, body []byte, a sigV4Auth, secret string, signedAt time.Time) (string, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	req.Host = r.Host
	for _, name := range a.signedHeaders {
		switch name {
		case "host":
		case "content-length":
			req.ContentLength = int64(len(body))
		default:
			if vs := r.Header.Values(name); len(vs) > 0 {
				req.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: a.accessKey, SecretAccessKey: secret}
	if err := s.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), SigV4Service, a.region, signedAt); err != nil {
		return "", fmt.Errorf("sign for comparison: %w", err)
	}
	return req.Header.Get("Authorization"), nil
}

// canonicalAuthorization drops optional spaces after commas, which signers
// differ on, so that equal signatures compare equal.
func canonicalAuthorization(h string) string {
	return strings.ReplaceAll(h, ", ", ",")
}
