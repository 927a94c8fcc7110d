package stream

import (
	"net/http"
	"net/url"
	"strings"
)

// AllowedOrigin reports whether a browser page on origin, another site than
// the server's, may use the API: the configured origins only, "*" only when
// configured. CORS answers by it.
func (p *Policy) AllowedOrigin(origin string) bool {
	if origin == "" {
		return false
	}
	if _, err := url.Parse(origin); err != nil {
		return false
	}
	for _, o := range p.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// CheckOrigin lets a connection in from a non-browser client (no Origin), a
// page of the server's own origin or an allowed one: a page on another site
// must not drive the server with its visitor's credentials. A refusal is
// logged as met on the way named by on ("WebSocket upgrade").
func (p *Policy) CheckOrigin(r *http.Request, on string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) || p.AllowedOrigin(origin) {
		return true
	}
	p.cfg.Refusals.Origin(r.Context(), p.ClientAddr(r), origin, on)
	return false
}
