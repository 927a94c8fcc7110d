package gateway

import "net/http"

// Handler returns every route the server answers.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", g.serveGraphQL)
	mux.HandleFunc("/graphql/realtime", g.serveGraphQL)
	mux.HandleFunc("GET /healthz", g.healthz)
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.HandleFunc("GET /{$}", g.chatUI)
	mux.HandleFunc("GET /assets/", g.uiAsset)
	mux.HandleFunc("GET /about", g.about)
	return mux
}
