package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strings"

	"github.com/tokencast/tokencast/internal/auth"
	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph"
)

// This file owns the steps a request to /graphql goes through before a
// transport answers it; routes.go chains them.

// upgrade hands a WebSocket upgrade to ws, which authenticates in its own
// protocol, and everything else to next.
func upgrade(ws, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			ws.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// jsonPost lets through one JSON object POSTed as application/json, no
// larger than the server accepts: no GET, no form or multipart body, which a
// cross-site page could send without a CORS preflight, and no batch.
func (g *Gateway) jsonPost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			graph.WriteErrors(w, http.StatusMethodNotAllowed, graph.Refusal(chat.CodeBadInput, "use POST with a JSON body, or a WebSocket"))
			return
		}
		g.jsonBody(`{"query": …}; batches are not accepted`, next).ServeHTTP(w, r)
	})
}

// jsonBody lets through a request whose body is one JSON object sent as
// application/json, no larger than the server accepts; example says what
// the object looks like.
func (g *Gateway) jsonBody(example string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			graph.WriteErrors(w, http.StatusUnsupportedMediaType, graph.Refusal(chat.CodeBadInput, "Content-Type must be application/json"))
			return
		}
		// Read the whole (bounded) body first, so an oversized one gets a
		// clear 413 rather than a decoding error, and SigV4 can hash it.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
		if err != nil {
			graph.WriteErrors(w, http.StatusRequestEntityTooLarge, graph.Refusal("BODY_TOO_LARGE", "the request body is larger than the server accepts"))
			return
		}
		// One JSON object: a batch (an array) or broken JSON gets a fixed
		// message and code, never the body echoed back.
		if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(body) {
			graph.WriteErrors(w, http.StatusBadRequest, graph.Refusal(chat.CodeBadInput, "the body must be one JSON object: "+example))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// uiPost is the chain of a UI toolkit's POST endpoint (named on, for the
// refusals' log): an allowed origin, one bounded JSON object, an
// authenticated caller. The mux has matched the method.
func (g *Gateway) uiPost(on, example string, next http.HandlerFunc) http.Handler {
	return g.origin(on, g.jsonBody(example, g.authenticated(next)))
}

// origin refuses a browser page of another site than the server's own or
// an allowed one, as a WebSocket upgrade is refused: a streamed answer is
// read as it is written, whatever CORS says afterwards.
func (g *Gateway) origin(on string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.d.Policy.CheckOrigin(r, on) {
			graph.WriteErrors(w, http.StatusForbidden, graph.Refusal(chat.CodeForbidden, "this origin may not use the API (see --allowed-origins)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticated finds the caller of a GraphQL request and passes the
// request on with the principal and the client's address in its context.
func (g *Gateway) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := g.d.Policy.ClientAddr(r)
		p, ok := g.authenticate(w, r, addr)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithClientAddr(auth.WithPrincipal(r.Context(), p), addr)))
	})
}

// authenticate finds the caller by a SigV4 signature (service appsync), a
// bearer token or an x-api-key, by the policy every transport uses. It has
// answered when ok is false.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, addr netip.Addr) (p *auth.Principal, ok bool) {
	origin := r.Header.Get("Origin")
	unauthorized := func(msg string) (*auth.Principal, bool) {
		graph.WriteErrors(w, http.StatusUnauthorized, graph.Refusal(chat.CodeUnauthenticated, msg))
		return nil, false
	}
	if !auth.IsSigV4(r) {
		p, err := g.d.Policy.Authenticate(r.Context(), auth.Credentials{APIKey: r.Header.Get("X-Api-Key"), Authorization: r.Header.Get("Authorization")}, addr, origin)
		if err != nil {
			return unauthorized("a valid API key or token is required")
		}
		return p, true
	}
	refuse := func(msg string, err error) (*auth.Principal, bool) {
		g.d.Policy.Refusals().Credentials(r.Context(), addr, origin, err, "TOKENCAST_SIGV4_KEYS")
		return unauthorized(msg)
	}
	if g.cfg.SigV4 == nil {
		return refuse("SigV4 signatures are not accepted here: no access keys are configured", errors.New("a SigV4 signature"))
	}
	// jsonPost has read the body into memory; the signature covers it.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return refuse("the request signature does not verify", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p, err = g.cfg.SigV4.Verify(r.Context(), r, body)
	if err != nil {
		return refuse("the request signature does not verify", err)
	}
	return p, true
}

// eventStream hands a request that accepts an event stream to sse, and
// everything else to next.
func eventStream(sse, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			sse.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
