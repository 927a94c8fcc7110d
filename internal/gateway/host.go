package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
)

// hosts refuses, in development mode, a request whose Host is not a loopback
// name or one of --allowed-hosts. A development server is open on loopback;
// without this, a page on evil.example whose name the attacker re-points at
// 127.0.0.1 (DNS rebinding) would be same-origin with it, Origin check and
// CORS notwithstanding.
func (g *Gateway) hosts(next http.Handler) http.Handler {
	if !g.cfg.LoopbackHostsOnly {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.allowedHost(r.Host) {
			g.d.Policy.Refusals().Host(r.Context(), g.d.Policy.ClientAddr(r), r.Host)
			graph.WriteErrors(w, http.StatusForbidden, graph.Refusal(chat.CodeForbidden, "this development server answers only to localhost, 127.0.0.1 and [::1] (see --allowed-hosts)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) allowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return true
	}
	for _, h := range g.cfg.AllowedHosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
