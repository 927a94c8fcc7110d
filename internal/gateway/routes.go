package gateway

import "net/http"

// Handler returns every route the server answers.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", g.serveGraphQL)
	mux.HandleFunc("/graphql/realtime", g.serveGraphQL)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(g.ready))
	mux.HandleFunc("GET /{$}", g.chatUI)
	mux.HandleFunc("GET /assets/", g.uiAsset)
	mux.HandleFunc("GET /about", g.about)
	if g.cfg.Metrics != nil {
		mux.Handle("GET /metrics", g.cfg.Metrics)
	}
	return g.cors(mux)
}

// HealthHandler is all a worker-only process serves: health and metrics.
func HealthHandler(ready map[string]Readiness, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(ready))
	return mux
}
