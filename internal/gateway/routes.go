package gateway

import (
	"net/http"
	"net/http/pprof"
)

// Handler returns every route the server answers.
func (g *Gateway) Handler() http.Handler {
	// One GraphQL endpoint, every transport behind one policy: a WebSocket
	// upgrade goes to the connection engine, which checks the origin and
	// authenticates in its own protocol; anything else must be one JSON
	// object POSTed by an authenticated caller, and is streamed as SSE when
	// it accepts an event stream, else answered once.
	graphql := upgrade(g.d.WebSocket,
		g.jsonPost(g.authenticated(
			eventStream(g.d.SSE, g.d.GraphQL))))

	mux := http.NewServeMux()
	mux.Handle("/graphql", graphql)
	mux.Handle("/graphql/realtime", graphql) // AppSync clients' custom-domain path
	if c := g.d.AISDK; c != nil {
		// The AI SDK's DefaultChatTransport (api: "/api/chat"), behind
		// the same policy as /graphql: one JSON object per POST, an
		// allowed origin, an authenticated caller.
		mux.Handle("POST /api/chat", g.uiPost("AI SDK chat", `{"id": …, "messages": […]}`, c.Chat))
		mux.Handle("GET /api/chat/{id}/stream", g.origin("AI SDK resume", g.authenticated(http.HandlerFunc(c.Resume))))
		mux.Handle("POST /api/chat/{id}/stop", g.uiPost("AI SDK stop", `{}`, c.Stop))
	}
	if a := g.d.AGUI; a != nil {
		// AG-UI's HttpAgent (url: "/api/agui"), behind the same policy.
		mux.Handle("POST /api/agui", g.uiPost("AG-UI run", `{"threadId": …, "runId": …, "messages": […]}`, a.ServeHTTP))
	}
	if e := g.d.Events; e != nil {
		// AppSync Events (Amplify v6's events client, endpoint ".../event"):
		// the real-time WebSocket is the engine's aws-appsync-event-ws
		// dialect, which checks the origin and authenticates by its
		// header-… subprotocol; the HTTP publish is behind the same policy
		// as /graphql (SigV4 included).
		mux.Handle("GET /event/realtime", upgrade(g.d.WebSocket, http.NotFoundHandler()))
		mux.Handle("POST /event", g.uiPost("AppSync Events publish", `{"channel": "/tokencast/sessions/<sessionId>", "events": ["<JSON>"]}`, e.ServeHTTP))
	}
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(g.d.Ready))
	mux.HandleFunc("GET /{$}", g.chatUI)
	mux.HandleFunc("GET /assets/", g.uiAsset)
	mux.HandleFunc("GET /about", g.about)
	if g.cfg.Metrics != nil {
		mux.Handle("GET /metrics", g.cfg.Metrics)
	}
	return g.hosts(g.cors(mux))
}

// InternalHandler serves the internal listener: metrics and, when asked
// for, Go's profiles. It is never the public port.
func InternalHandler(metrics http.Handler, profiles bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	if profiles {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// HealthHandler is all a worker-only process serves: health and, unless an
// internal listener has them, metrics.
func HealthHandler(ready map[string]Readiness, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(ready))
	return mux
}
