package auth

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.0.2.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		peer    string
		headers map[string][]string
		want    string
	}{
		{"no proxy: the peer", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"a forged header from an untrusted peer is ignored", "203.0.113.7:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "Forwarded": {"for=198.51.100.2"}}, "203.0.113.7"},
		{"a trusted proxy's X-Forwarded-For", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"what a client prepends cannot move it", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, 198.51.100.1"}}, "198.51.100.1"},
		{"a chain of trusted proxies is skipped", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, 198.51.100.1", "10.9.9.9, 192.0.2.1"}}, "198.51.100.1"},
		{"only trusted addresses: the left-most", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5"},
		{"Forwarded wins over X-Forwarded-For", "192.0.2.1:443",
			map[string][]string{"Forwarded": {`for=198.51.100.9;proto=https, for="[2001:db8::17]:4711"`}, "X-Forwarded-For": {"1.1.1.1"}}, "2001:db8::17"},
		{"an obfuscated node breaks the chain: the peer", "10.1.2.3:5000",
			map[string][]string{"Forwarded": {"for=_hidden, for=198.51.100.1"}}, "10.1.2.3"},
		{"garbage: the peer", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"not-an-address"}}, "10.1.2.3"},
		{"an IPv4-mapped peer", "[::ffff:10.1.2.3]:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"an IPv6 proxy", "[fd00::1]:5000",
			map[string][]string{"X-Forwarded-For": {"2001:db8::5"}}, "2001:db8::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := proxies.ClientAddr(r); got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ClientAddr = %v, want %s", got, tc.want)
			}
		})
	}
	if _, err := ParseProxies("10.0.0.0/33"); err == nil {
		t.Fatal("a bad CIDR was accepted")
	}
	if _, err := ParseProxies("example.com"); err == nil {
		t.Fatal("a host name was accepted")
	}
}

func TestLimitKeyCountsPublicKeysPerAddress(t *testing.T) {
	keys := &Keys{}
	if err := keys.Add("app:private-key-0123456789", Client); err != nil {
		t.Fatal(err)
	}
	if err := keys.AddPublic("web:public-key-0123456789"); err != nil {
		t.Fatal(err)
	}
	private, public := keys.Lookup("private-key-0123456789"), keys.Lookup("public-key-0123456789")
	if private == nil || public == nil || private.Public || !public.Public || public.ID != "key:web" || public.Kind != Client {
		t.Fatalf("private %+v, public %+v", private, public)
	}
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if private.LimitKey(a) != private.LimitKey(b) || private.LimitKey(a) != "key:app" {
		t.Fatalf("a private key's limits depend on the address: %q %q", private.LimitKey(a), private.LimitKey(b))
	}
	if public.LimitKey(a) == public.LimitKey(b) {
		t.Fatalf("two addresses share a public key's limits: %q", public.LimitKey(a))
	}
	// One IPv6 subscriber holds a /64: its addresses count as one.
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if public.LimitKey(v6a) != public.LimitKey(v6b) || public.LimitKey(v6a) == public.LimitKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatalf("IPv6: %q %q", public.LimitKey(v6a), public.LimitKey(v6b))
	}
}
