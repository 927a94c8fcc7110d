package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"alive"}` + "\n"))
}

// readyz checks every part; 503 names what is not ready.
func readyz(ready map[string]Readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		serveReady(w, r, ready)
	}
}

func serveReady(w http.ResponseWriter, r *http.Request, ready map[string]Readiness) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := http.StatusOK
	checks := make(map[string]string, len(ready))
	for name, check := range ready {
		if err := check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			checks[name] = err.Error()
			continue
		}
		checks[name] = "ok"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": status == http.StatusOK, "checks": checks})
}
