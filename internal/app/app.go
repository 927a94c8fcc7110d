// Package app builds tokencast from its configuration: the one place that
// wires the parts together and owns their lifetimes.
package app

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/tracing"
)

// DefaultModel is the model answering when nothing else is configured.
const DefaultModel = "demo:default"

// Options are what a program embedding the server adds beyond its
// configuration; the zero value is the plain server.
type Options struct {
	// Models are served beside the configured models, keyed by the name a
	// request uses ("provider:id"). tokencast bench registers its fake LLM
	// here so token emission and receipt are timed on one clock.
	Models map[string]orchestrator.Provider
	// ModelTools are the tools each of Models may call, as patterns like
	// a config file's models.X.tools ("builtin.*", "server.tool"); one not
	// named here calls none. tokencast bench --agent-steps gives its fake
	// LLM the built-in calculator.
	ModelTools map[string][]string
}

// Serve runs the server until ctx ends, then shuts it down gracefully:
// readiness turns false, new asks and connections are refused, answers in
// flight may finish until the shutdown timeout, unfinished requests are handed
// back for another worker, and clients are told to reconnect.
func Serve(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer) error {
	return ServeWith(ctx, cfg, version, stdout, stderr, Options{})
}

// ServeWith is Serve with the additions in opts.
func ServeWith(ctx context.Context, cfg *config.Config, version string, stdout, stderr io.Writer, opts Options) error {
	log := newLogger(cfg.Log, stderr)
	stopTracing, err := tracing.Setup(ctx, cfg.Getenv, version)
	if err != nil {
		return err
	}
	defer func() {
		// A collector that is down must not hold the exit up.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(tctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	s, err := build(ctx, cfg, version, opts, log)
	if err != nil {
		return err
	}
	defer s.close()
	defer s.reloadOnHangup()()
	return s.serve(ctx, stdout)
}

// newLogger logs to w at the level and in the format configured.
func newLogger(l config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
