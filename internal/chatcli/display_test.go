package chatcli

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Events as the server sends them, for the display.
func reasoning(s string) event { return event{Type: "REASONING", Message: s} }

func call(name, input string) event {
	ev := event{Type: "TOOL_CALL"}
	ev.ToolCall = &struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Input string `json:"input"`
	}{ID: "c-" + name, Name: name, Input: input}
	return ev
}

func result(name, output string, failed bool, ms float64) event {
	return event{Type: "TOOL_RESULT", ToolResult: &toolResult{CallID: "c-" + name, Name: name, Output: output, IsError: failed, DurationMs: ms}}
}

func step(n int, reason string, continues bool) event {
	ev := event{Type: "STEP"}
	ev.Step = &struct {
		Number    int    `json:"number"`
		Reason    string `json:"reason"`
		Continues bool   `json:"continues"`
	}{n, reason, continues}
	return ev
}

func source(title, url string) event {
	ev := event{Type: "SOURCE"}
	ev.Source = &struct {
		Title string `json:"title"`
		URL   string `json:"url"`
	}{title, url}
	return ev
}

func settled(tool string, approved bool, reason string) event {
	return event{Type: "APPROVAL", Approval: &approval{CallID: "c-" + tool, Tool: tool, Approved: approved, Reason: reason}}
}

// TestDisplay: what a user sees of an answer on stdout and stderr, for the
// display's calls in order.
func TestDisplay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		show     func(d *display)
		out, err string
	}{
		{
			name: "verbose shows the run on stderr, the text alone on stdout",
			opts: Options{Verbose: true},
			show: func(d *display) {
				d.hint()
				d.agent(reasoning("I will "))
				d.agent(reasoning("compute."))
				d.agent(call("calculator", `{"expression":"6*7"}`))
				d.agent(step(1, "tool_use", true))
				d.agent(result("calculator", "42", false, 0.412))
				d.agent(result("clock", "unreachable", true, 0))
				d.agent(source("Docs", "https://example.com/docs"))
				d.text("6*7 = 42.")
				d.agent(step(2, "end_turn", false))
				d.end(true)
			},
			out: "6*7 = 42.\n",
			err: "reasoning: I will compute.\n" +
				`→ calculator {"expression":"6*7"}` + "\n" +
				"step 1 ended (tool_use); the run goes on\n" +
				"← calculator 42 (0.412 ms)\n" +
				"← clock failed: unreachable\n" +
				"source: Docs https://example.com/docs\n" +
				"step 2 ended (end_turn)\n",
		},
		{
			name: "quiet shows nothing of the run",
			show: func(d *display) {
				d.agent(reasoning("hmm"))
				d.agent(call("calculator", "{}"))
				d.agent(result("calculator", "42", false, 1))
				d.agent(settled("calculator", true, ""))
				d.text("42")
				d.end(true)
			},
			out: "42\n",
		},
		{
			name: "a restart ends the text shown and marks the lines already there",
			opts: Options{Verbose: true},
			show: func(d *display) {
				d.agent(reasoning("first try"))
				d.agent(call("clock", "{}"))
				d.text("The time")
				d.restart()
				d.agent(reasoning("second try"))
				d.text("The time is now.")
				d.end(true)
			},
			out: "The time\nThe time is now.\n",
			err: "reasoning: first try\n→ clock {}\n" +
				"tokencast: the answer restarts from the beginning\n(restarted)\n" +
				"reasoning: second try\n",
		},
		{
			name: "a restart before any text, quiet, says nothing",
			show: func(d *display) {
				d.agent(call("clock", "{}"))
				d.restart()
				d.text("ok")
				d.end(true)
			},
			out: "ok\n",
		},
		{
			name: "a prompt holds the lines that come while it waits",
			opts: Options{Verbose: true},
			show: func(d *display) {
				d.agent(call("calculator", "{}"))
				d.prompt("approve calculator {}? [y/N] ")
				d.agent(result("clock", "noon", false, 2))
				d.answered("n", false)
				d.agent(settled("calculator", false, "denied at the terminal"))
				d.agent(result("calculator", "the user denied this tool call: denied at the terminal", true, 0))
			},
			err: "→ calculator {}\n" +
				"approve calculator {}? [y/N] n\n" +
				"← clock noon (2 ms)\n" +
				"denied calculator: denied at the terminal\n" +
				"← calculator failed: the user denied this tool call: denied at the terminal\n",
		},
		{
			name: "on a terminal, the hint goes and stderr lines start a line of their own",
			opts: Options{Verbose: true, Terminal: true, Dim: true},
			show: func(d *display) {
				d.hint()
				d.agent(reasoning("thinking"))
				d.text("Let me look.")
				d.agent(call("clock", "{}"))
				d.text("Done.")
				d.end(true)
			},
			out: hintText + hintErase + "Let me look.\nDone.\n",
			err: styleDim + "reasoning: thinking" + styleReset + "\n→ clock {}\n",
		},
		{
			name: "piped, an answer with no text still ends with a line break",
			show: func(d *display) {
				d.end(true)
			},
			out: "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			tc.show(newDisplay(tc.opts, &out, &errOut))
			if out.String() != tc.out {
				t.Errorf("stdout\n got %q\nwant %q", out.String(), tc.out)
			}
			if errOut.String() != tc.err {
				t.Errorf("stderr\n got %q\nwant %q", errOut.String(), tc.err)
			}
		})
	}
}
