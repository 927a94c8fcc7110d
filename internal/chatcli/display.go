package chatcli

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// display is what the user sees of one answer: its text on stdout (and
// nothing else there, so a pipe gets exactly the answer), and on stderr the
// approval prompts and, with --verbose, the agent run as it happens.
type display struct {
	stdout, stderr io.Writer
	verbose        bool
	terminal       bool // stdout is a terminal: the waiting hint, a line break before stderr lines
	dim            bool // stderr is a terminal: reasoning is dim

	waiting   bool // the "…" hint is on stdout
	midLine   bool // stdout's text does not end with a line break
	wrote     bool // this attempt wrote answer text
	shown     bool // this attempt wrote agent lines to stderr
	reasoning bool // a "reasoning: " line is open on stderr
	// held keeps the stderr lines that come while an approval prompt waits
	// for its answer, so they do not run into the line being typed. The run
	// is paused meanwhile: only the results of calls made in parallel come.
	held *bytes.Buffer
}

// maxHeld bounds what is held while a prompt waits; past it, lines are
// written through.
const maxHeld = 64 << 10

const (
	styleDim   = "\x1b[2m"
	styleReset = "\x1b[0m"
	hintText   = styleDim + "…" + styleReset
	hintErase  = "\b\x1b[K"
)

func newDisplay(o Options, stdout, stderr io.Writer) *display {
	return &display{stdout: stdout, stderr: stderr, verbose: o.Verbose, terminal: o.Terminal, dim: o.Dim}
}

// hint shows that the answer is awaited, on a terminal.
func (d *display) hint() {
	if d.terminal {
		fmt.Fprint(d.stdout, hintText)
		d.waiting = true
	}
}

func (d *display) clearHint() {
	if d.waiting {
		fmt.Fprint(d.stdout, hintErase)
		d.waiting = false
	}
}

// text writes answer text to stdout.
func (d *display) text(s string) {
	d.clearHint()
	d.endReasoning()
	fmt.Fprint(d.stdout, s)
	d.wrote = true
	if s != "" {
		d.midLine = !strings.HasSuffix(s, "\n")
	}
}

// end ends the answer's line on stdout. Piped, the answer always ends
// with a line break after END, after an ERROR or a stop when text was
// written; on a terminal, the line is ended when it is open.
func (d *display) end(always bool) {
	d.clearHint()
	d.endReasoning()
	if d.terminal && !d.midLine {
		return
	}
	if always || d.wrote {
		fmt.Fprintln(d.stdout)
		d.midLine = false
	}
}

// restart drops what was shown of the answer: the text's line ends and the
// user is told; agent lines already on stderr stay, marked.
func (d *display) restart() {
	d.clearHint()
	d.endReasoning()
	if d.wrote {
		fmt.Fprintln(d.stdout)
		d.midLine = false
		d.write("tokencast: the answer restarts from the beginning\n")
	}
	if d.verbose && d.shown {
		d.write("(restarted)\n")
	}
	d.wrote, d.shown = false, false
}

// agent shows an agent event under --verbose.
func (d *display) agent(ev event) {
	if !d.verbose {
		return
	}
	switch ev.Type {
	case "REASONING":
		if !d.reasoning {
			d.startLine()
			if d.dim {
				d.write(styleDim)
			}
			d.write("reasoning: ")
			d.reasoning = true
		}
		d.write(ev.Message)
	case "TOOL_CALL":
		if c := ev.ToolCall; c != nil {
			d.line(fmt.Sprintf("→ %s %s", c.Name, c.Input))
		}
	case "TOOL_RESULT":
		if r := ev.ToolResult; r != nil {
			d.line(r.String())
		}
	case "STEP":
		if s := ev.Step; s != nil {
			msg := fmt.Sprintf("step %d ended", s.Number)
			if s.Reason != "" {
				msg += " (" + s.Reason + ")"
			}
			if s.Continues {
				msg += "; the run goes on"
			}
			d.line(msg)
		}
	case "SOURCE":
		if s := ev.Source; s != nil {
			d.line(strings.TrimSpace("source: " + strings.TrimSpace(s.Title+" "+s.URL)))
		}
	case "APPROVAL":
		if a := ev.Approval; a != nil {
			if a.Approved {
				d.line("approved " + a.Tool)
			} else {
				d.line(strings.TrimSuffix("denied "+a.Tool+": "+a.Reason, ": "))
			}
		}
	}
}

// line writes a whole line to stderr, on a line of its own.
func (d *display) line(s string) {
	d.startLine()
	d.write(s + "\n")
	d.shown = true
}

// startLine makes sure what comes next on stderr starts a line, on a
// terminal shared with stdout.
func (d *display) startLine() {
	d.endReasoning()
	if d.held != nil {
		return // stdout does not move while a prompt waits
	}
	d.clearHint()
	if d.terminal && d.midLine {
		fmt.Fprintln(d.stdout)
		d.midLine = false
	}
}

func (d *display) endReasoning() {
	if !d.reasoning {
		return
	}
	d.reasoning = false
	if d.dim {
		d.write(styleReset)
	}
	d.write("\n")
}

// prompt asks a question on stderr and holds other stderr lines until
// answered says what the answer was.
func (d *display) prompt(question string) {
	d.startLine()
	fmt.Fprint(d.stderr, question)
	d.shown = true
	d.held = &bytes.Buffer{}
}

// answered ends the prompt's line with echo (what was answered), unless
// typed says the terminal showed the line typed, and writes the lines held
// meanwhile.
func (d *display) answered(echo string, typed bool) {
	if !typed {
		fmt.Fprintln(d.stderr, echo)
	}
	if d.held != nil {
		_, _ = d.stderr.Write(d.held.Bytes())
		d.held = nil
	}
}

func (d *display) write(s string) {
	if d.held != nil && d.held.Len()+len(s) <= maxHeld {
		d.held.WriteString(s)
		return
	}
	fmt.Fprint(d.stderr, s)
}

// String is a result as --verbose shows it.
func (r *toolResult) String() string {
	out := strings.ReplaceAll(strings.TrimRight(r.Output, "\n"), "\n", "\n  ")
	var s string
	if r.IsError {
		s = fmt.Sprintf("← %s failed: %s", r.Name, out)
	} else {
		s = fmt.Sprintf("← %s %s (%s ms)", r.Name, out, strconv.FormatFloat(r.DurationMs, 'f', -1, 64))
	}
	if r.Truncated {
		s += " (truncated)"
	}
	return s
}
