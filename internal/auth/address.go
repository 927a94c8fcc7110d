package auth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the peers trusted to say, in X-Forwarded-For or Forwarded,
// which address they forward for (--trusted-proxies). A header from any
// other peer is ignored: anyone can write one.
type Proxies []netip.Prefix

// ParseProxies reads comma-separated CIDRs or single addresses.
func ParseProxies(list string) (Proxies, error) {
	var p Proxies
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q: want a CIDR (10.0.0.0/8) or an address (without a zone)", item)
			}
			p = append(p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		pre, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR (10.0.0.0/8) or an address", item)
		}
		p = append(p, pre.Masked())
	}
	return p, nil
}

func (p Proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, pre := range p {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address a request comes from: its peer, unless the peer
// is a trusted proxy. Then the forwarding chain (Forwarded when present,
// else X-Forwarded-For) is read from the right, the end the proxies wrote,
// and the first address that is not itself a trusted proxy is the client:
// whatever a client wrote further left cannot move it. A chain made only of
// trusted proxies gives the left-most of them; an unreadable chain, the peer.
func (p Proxies) ClientAddr(r *http.Request) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if len(p) == 0 || !peer.IsValid() || !p.trusted(peer) {
		return peer
	}
	chain, ok := forwardedFor(r.Header)
	if !ok {
		return peer
	}
	client := peer
	for i := len(chain) - 1; i >= 0; i-- {
		client = chain[i]
		if !p.trusted(client) {
			break
		}
	}
	return client
}

// remoteAddr reads a peer address; its zone, if any, is dropped, as no
// prefix contains a zoned address.
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap().WithZone("")
}

// forwardedFor reads the chain of addresses a request was forwarded for, in
// order. ok is false when there is none or any element is not an address
// (an obfuscated or "unknown" node breaks the chain: nothing left of it can
// be placed).
func forwardedFor(h http.Header) (chain []netip.Addr, ok bool) {
	if lines := h.Values("Forwarded"); len(lines) > 0 {
		for _, line := range lines {
			for _, elem := range strings.Split(line, ",") {
				a, ok := forwardedElement(elem)
				if !ok {
					return nil, false
				}
				chain = append(chain, a)
			}
		}
		return chain, len(chain) > 0
	}
	for _, line := range h.Values("X-Forwarded-For") {
		for _, item := range strings.Split(line, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(item))
			if err != nil {
				return nil, false
			}
			chain = append(chain, a.Unmap().WithZone(""))
		}
	}
	return chain, len(chain) > 0
}

// forwardedElement reads the for= parameter of one RFC 7239 element:
// for=192.0.2.60, for="[2001:db8::17]:4711", for="192.0.2.60:80".
func forwardedElement(elem string) (netip.Addr, bool) {
	for _, pair := range strings.Split(elem, ";") {
		name, value, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found || !strings.EqualFold(name, "for") {
			continue
		}
		value = strings.Trim(value, `"`)
		if host, _, err := net.SplitHostPort(value); err == nil {
			value = host
		}
		value = strings.TrimSuffix(strings.TrimPrefix(value, "["), "]")
		a, err := netip.ParseAddr(value)
		return a.Unmap().WithZone(""), err == nil
	}
	return netip.Addr{}, false
}

type addrKey struct{}

// WithClientAddr returns ctx carrying the address the caller comes from.
func WithClientAddr(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, addrKey{}, a)
}

// ClientAddrFrom returns the caller's address of ctx; invalid when unknown.
func ClientAddrFrom(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(addrKey{}).(netip.Addr)
	return a
}

// LimitKey names what a principal's limits (ask rate, connection caps) are
// counted against: the principal, or for a public key, the principal at one
// client address, since every visitor of a site shares its key. An IPv6
// client counts as its /64, the block one subscriber usually holds.
func (p *Principal) LimitKey(addr netip.Addr) string {
	if !p.Public {
		return p.ID
	}
	if addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return p.ID + "@" + addr.String()
}
