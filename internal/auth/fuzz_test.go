package auth

import (
	"context"
	"net/http/httptest"
	"net/netip"
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

// FuzzClientAddr checks the reading of Forwarded and X-Forwarded-For behind
// a trusted proxy: whatever the headers say, the client is the peer or an
// address the headers name, never one of the trusted proxies unless the
// whole chain is, and an untrusted peer is always its own client.
func FuzzClientAddr(f *testing.F) {
	for _, seed := range [][3]string{
		{"10.0.0.1:443", `for=192.0.2.60;proto=http;by=203.0.113.43`, ""},
		{"10.0.0.1:443", `for="[2001:db8:cafe::17]:4711", for=10.0.0.2`, ""},
		{"10.0.0.1:443", "", "203.0.113.7, 10.0.0.2"},
		{"10.0.0.1:443", `for=unknown`, "1.2.3.4"},
		{"192.0.2.1:80", "", "1.2.3.4"},
		{"[::ffff:10.0.0.1]:443", `For="_hidden", for=1.1.1.1`, ""},
		{"10.0.0.1:1", `for="[::1`, "x, , 1.1.1.1"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	proxies, err := ParseProxies("10.0.0.0/8, ::1")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, peer, forwarded, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		if forwarded != "" {
			r.Header.Set("Forwarded", forwarded)
		}
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		got := proxies.ClientAddr(r)
		p := remoteAddr(peer)
		if !p.IsValid() || !proxies.trusted(p) {
			if got != p {
				t.Fatalf("untrusted peer %q: client %v", peer, got)
			}
			return
		}
		if got == p {
			return
		}
		if !got.IsValid() || got.Is4In6() {
			t.Fatalf("client %v from peer %q, Forwarded %q, X-Forwarded-For %q", got, peer, forwarded, xff)
		}
		chain, ok := forwardedFor(r.Header)
		if !ok {
			t.Fatalf("client %v from an unreadable chain (Forwarded %q, X-Forwarded-For %q)", got, forwarded, xff)
		}
		named := false
		for _, a := range chain {
			named = named || a == got
		}
		if !named {
			t.Fatalf("client %v is not in the chain %v", got, chain)
		}
		if proxies.trusted(got) {
			for _, a := range chain {
				if !proxies.trusted(a) {
					t.Fatalf("client %v is a trusted proxy while %v in the chain %v is not", got, a, chain)
				}
			}
		}
	})
}

// FuzzParseProxies checks --trusted-proxies: a list is refused, or each
// entry becomes a masked prefix that contains the address it was written
// with.
func FuzzParseProxies(f *testing.F) {
	for _, seed := range []string{"", "10.0.0.0/8", "10.1.2.3/8, 192.168.0.1", "::1, fd00::/8", "1.2.3.4/33", "x", ",,", "::ffff:10.0.0.1", "10.0.0.0/8,"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		p, err := ParseProxies(list)
		if err != nil {
			return
		}
		for _, pre := range p {
			if !pre.IsValid() || pre != pre.Masked() {
				t.Fatalf("%q gave prefix %v", list, pre)
			}
		}
		for _, item := range strings.Split(list, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			addr, _, _ := strings.Cut(item, "/")
			a, err := netip.ParseAddr(addr)
			if err != nil {
				t.Fatalf("%q accepted with entry %q that holds no address", list, item)
			}
			if !strings.Contains(item, "/") && !p.trusted(a) {
				t.Fatalf("%q does not trust %v", list, a)
			}
		}
	})
}
