// Package web holds the chat UI: its source is built into dist/ (committed, so
// building the Go binary needs no Node) and embedded here.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Dist returns the built UI: index.html at the root, content-hashed files
// under assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// Unreachable: "dist" is a valid path embedded above.
		panic(err)
	}
	return sub
}
