package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// uiHeaders keep the chat page from ever running script it did not ship:
// model output is sanitized before it reaches the DOM, and this policy is
// the second wall behind that.
func uiHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// serveUIFile writes one embedded file. Names under assets/ carry a content
// hash, so they may be cached for good; everything else is revalidated.
func (g *Gateway) serveUIFile(w http.ResponseWriter, r *http.Request, name string) {
	if g.cfg.UI == nil {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(g.cfg.UI, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	ctype, ok := uiTypes[path.Ext(name)]
	if !ok {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	if strings.HasPrefix(name, "assets/") {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	sum := sha256.Sum256(data)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	uiHeaders(h)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// chatUI serves the chat page.
func (g *Gateway) chatUI(w http.ResponseWriter, r *http.Request) {
	g.serveUIFile(w, r, "index.html")
}

// uiAsset serves a built file under /assets/.
func (g *Gateway) uiAsset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if !strings.HasPrefix(name, "assets/") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	g.serveUIFile(w, r, name)
}
