package auth

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzBearer checks the Authorization header reading: whatever comes in, the
// token is trimmed and never keeps the scheme.
func FuzzBearer(f *testing.F) {
	for _, seed := range []string{"Bearer abc", "bearer  abc ", "BEARER", "Bearer ", "abc", "", " Bearer x y", "Basic dXNlcjpwYXNz"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok := bearer(h)
		if tok != strings.TrimSpace(tok) {
			t.Fatalf("bearer(%q) = %q, untrimmed", h, tok)
		}
		if len(tok) > len(h) {
			t.Fatalf("bearer(%q) = %q, longer than the header", h, tok)
		}
	})
}

// FuzzParseKeys checks that a key list either parses into keys that look
// themselves up, or is refused; it never panics.
func FuzzParseKeys(f *testing.F) {
	for _, seed := range []string{"", "alice:0123456789abcdef", "0123456789abcdef,bob:fedcba9876543210", "short", "a:b:0123456789abcdef", ",,, ,", "x:"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		for _, kind := range []Kind{Client, Service} {
			k, err := ParseKeys(list, kind)
			if err != nil {
				continue
			}
			for i, item := range strings.Split(list, ",") {
				item = strings.TrimSpace(item)
				if item == "" {
					continue
				}
				_, secret, ok := strings.Cut(item, ":")
				if !ok {
					secret = item
				}
				p := k.Lookup(secret)
				if p == nil || p.Kind != kind {
					t.Fatalf("key %d of %q (secret %q) does not look itself up: %+v", i, list, secret, p)
				}
			}
		}
	})
}

// FuzzSigV4Header feeds arbitrary Authorization and X-Amz-Date headers to the
// SigV4 verifier: it parses what it can and refuses the rest, and never
// accepts a request it did not sign.
func FuzzSigV4Header(f *testing.F) {
	date := "20250102T030405Z"
	for _, seed := range []string{
		"AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20250102/us-east-1/appsync/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20250102/us-east-1/appsync/aws4_request,SignedHeaders=content-length;host;x-amz-date;x-api-key,Signature=abcdef",
		"AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;, Signature=",
		"AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20250102/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=1",
		"AWS4-HMAC-SHA256 ",
		"Bearer x",
	} {
		f.Add(seed, date)
	}
	s, err := ParseSigV4Keys("AKIDFUZZ:fuzz-secret-0123456789", 5*time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	s.now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
	f.Fuzz(func(t *testing.T, authorization, amzDate string) {
		if a, err := parseSigV4Authorization(authorization); err == nil {
			if !strings.HasPrefix(authorization, sigV4Algorithm+" ") || a.signature == "" || len(a.signedHeaders) == 0 {
				t.Fatalf("parsed %q into %+v", authorization, a)
			}
		}
		r := httptest.NewRequest("POST", "http://api.example/graphql", strings.NewReader("{}"))
		r.Header.Set("Authorization", authorization)
		r.Header.Set("X-Amz-Date", amzDate)
		if p, err := s.Verify(context.Background(), r, []byte("{}")); err == nil {
			t.Fatalf("accepted an unsigned request as %+v: %q", p, authorization)
		}
	})
}
