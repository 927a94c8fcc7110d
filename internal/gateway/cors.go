package gateway

import "net/http"

// corsAllowHeaders are the request headers an AppSync frontend sends
// (Amplify: content-type, x-api-key, x-amz-user-agent; Cognito/OIDC and
// SigV4: authorization, x-amz-date, x-amz-security-token) plus graphql-sse's
// accept.
const corsAllowHeaders = "content-type, x-api-key, x-amz-user-agent, authorization, x-amz-date, x-amz-security-token, x-amz-content-sha256, accept"

// cors answers preflights and marks responses readable by the configured
// origins. Requests from other origins get no CORS headers, so the browser
// refuses them (a JSON POST always needs a preflight).
func (g *Gateway) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := g.d.Policy.AllowedOrigin(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !allowed {
				g.d.Policy.Refusals().Origin(r.Context(), g.d.Policy.ClientAddr(r), origin, "CORS preflight")
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		next.ServeHTTP(w, r)
	})
}
