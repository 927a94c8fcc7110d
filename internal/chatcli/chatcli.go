// Package chatcli is `tokencast chat`: a terminal client that asks a question
// and prints the answer as it streams, over the same public API a browser uses
// (GraphQL POST to ask, graphql-transport-ws to watch).
package chatcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Options is what one chat run needs.
type Options struct {
	// URL is the server's base URL or its /graphql endpoint.
	URL     string
	Session string
	Model   string
	Locale  string
	APIKey  string
	Verbose bool
	// Terminal says stdout is a terminal: show a waiting hint and flush each
	// token as it arrives. Otherwise only the answer text is written.
	Terminal bool
	// Prompt says stdin is a terminal, so interactive mode shows a prompt
	// (and an approval's answer is not echoed: the terminal showed it).
	Prompt bool
	// Dim says stderr is a terminal, so an agent run's reasoning is dim.
	Dim bool
}

// Error is a failure the server named with a stable code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

const usageText = `Usage: tokencast chat [flags] ["question"]

Asks a tokencast server and prints the answer as it streams. With no question,
reads questions line by line from stdin, all in one conversation.

stdout gets the answer's text only, also from an agent run. With --verbose,
stderr shows the run as it happens: the reasoning, each tool call
("→ calculator {...}") and its result ("← calculator 42 (3 ms)"), where each
model call ends, the sources. A tool call that needs approval asks on stderr
("approve calculator {...}? [y/N]") and reads the answer from stdin, in
interactive mode too: y approves, anything else denies, and so does the end
of stdin.

Flags:
`

// Parse reads the flags of `tokencast chat`; the question is the remaining
// arguments joined by spaces ("" for interactive mode).
func Parse(args []string, getenv func(string) string, out io.Writer) (Options, string, error) {
	o := Options{}
	fs := flag.NewFlagSet("tokencast chat", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.URL, "url", envOr(getenv, "TOKENCAST_URL", "http://127.0.0.1:8080"), "server URL (env TOKENCAST_URL)")
	fs.StringVar(&o.Session, "session", "", "session id to continue (default: a new one)")
	fs.StringVar(&o.Model, "model", "", "model to ask (default: the server's default; see the models query)")
	fs.StringVar(&o.Locale, "locale", "en", "locale of the answer, e.g. en or fr-FR")
	fs.StringVar(&o.APIKey, "api-key", getenv("TOKENCAST_API_KEY"), "API key, when the server requires one (env TOKENCAST_API_KEY, which keeps it out of ps)")
	fs.BoolVar(&o.Verbose, "verbose", false, "print the session, an agent run's reasoning, tool calls, results and steps, time to first token, tokens/s and usage to stderr")
	fs.Usage = func() {
		fmt.Fprint(out, usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, "", err
	}
	if o.Session == "" {
		o.Session = "cli-" + uuid.NewString()
	}
	return o, strings.TrimSpace(strings.Join(fs.Args(), " ")), nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// Run asks question, or with an empty question runs an interactive session
// reading questions from stdin.
func Run(ctx context.Context, o Options, question string, stdin io.Reader, stdout, stderr io.Writer) error {
	c, err := Connect(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	c.lines = newLines(stdin)
	defer c.lines.Close()
	if o.Verbose {
		fmt.Fprintf(stderr, "session %s\n", o.Session)
	}
	if question != "" {
		return c.Ask(ctx, question, stdout, stderr)
	}
	return c.interactive(ctx, stdout, stderr)
}

// interactive asks each line of stdin in the same session until EOF. A failed
// answer is reported and the session goes on; a lost server ends it.
func (c *Client) interactive(ctx context.Context, stdout, stderr io.Writer) error {
	for {
		if c.opts.Prompt {
			fmt.Fprint(stdout, "> ")
		}
		text, err := c.lines.Next(ctx)
		if err != nil {
			if c.opts.Prompt {
				fmt.Fprintln(stdout)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		q := strings.TrimSpace(text)
		if q == "" {
			continue
		}
		err = c.Ask(ctx, q, stdout, stderr)
		var answerErr *Error
		switch {
		case err == nil:
		case errors.As(err, &answerErr) && answerErr.Code != "UNAUTHENTICATED" && answerErr.Code != "CONNECTION":
			fmt.Fprintf(stderr, "tokencast: %v\n", err)
		default:
			return err
		}
	}
}

// stats is what --verbose prints about one answer.
type stats struct {
	asked, first, end time.Time
	usage             *usage
	model, stop       string
}

func (s stats) String() string {
	var parts []string
	if !s.first.IsZero() {
		parts = append(parts, fmt.Sprintf("ttft %s", s.first.Sub(s.asked).Round(time.Millisecond)))
	}
	if s.usage != nil {
		if d := s.end.Sub(s.first); !s.first.IsZero() && d > 0 && s.usage.OutputTokens > 1 {
			parts = append(parts, fmt.Sprintf("%.1f tokens/s", float64(s.usage.OutputTokens-1)/d.Seconds()))
		}
		parts = append(parts, fmt.Sprintf("usage in %d out %d total %d", s.usage.InputTokens, s.usage.OutputTokens, s.usage.TotalTokens))
	}
	if s.model != "" {
		parts = append(parts, "model "+s.model)
	}
	if s.stop != "" {
		parts = append(parts, "stop "+s.stop)
	}
	return strings.Join(parts, " · ")
}
