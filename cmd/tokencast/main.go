// Command tokencast turns a streaming LLM into a real-time GraphQL API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokencast/tokencast/internal/app"
	"github.com/tokencast/tokencast/internal/bench"
	"github.com/tokencast/tokencast/internal/chatcli"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/usagecli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokencast:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

const usage = `Usage: tokencast <command> [flags]

Commands:
  serve     serve the GraphQL API (default when no command is given)
  chat      ask a server and print the answer as it streams;
            with no question, an interactive session on stdin
  bench     load-test a tokencast through a fake LLM (latency, throughput, loss, memory)
  usage     print what the provider calls cost, by principal, model and day
  version   print the version

Run "tokencast serve --help", "tokencast chat --help", "tokencast bench --help" or
"tokencast usage --help" for every setting.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := config.Parse(args, getenv, stdout)
		if err != nil {
			return err
		}
		return app.Serve(ctx, cfg, version, stdout, stderr)
	case "chat":
		opts, question, err := chatcli.Parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		opts.Terminal = isTerminal(stdout)
		opts.Prompt = isTerminal(stdin)
		opts.Dim = isTerminal(stderr)
		return chatcli.Run(ctx, opts, question, stdin, stdout, stderr)
	case "bench":
		cfg, err := bench.Parse(args, getenv, stdout)
		if err != nil {
			return err
		}
		return bench.Run(ctx, cfg, stdout, stderr)
	case "usage":
		opts, err := usagecli.Parse(args, getenv, time.Now(), stdout)
		if err != nil {
			return err
		}
		return usagecli.Run(ctx, opts, stdout)
	case "version":
		fmt.Fprintf(stdout, "tokencast %s\n", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// isTerminal reports whether f is a character device (a terminal), so chat
// can stream with a live hint there and write plain text into pipes.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	info, err := file.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
