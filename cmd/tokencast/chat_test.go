package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/demo"
)

// chatRun runs `tokencast chat` with args against s, as a user would from a
// shell with the given environment and stdin.
func chatRun(t *testing.T, s *server, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	all := append([]string{"chat", "--url", "http://" + s.addr}, args...)
	err = run(ctx, all, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestChatPrintsTheStreamedAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	out, errOut, err := chatRun(t, s, nil, "", "--session", "cli-1", "What is tokencast?")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut)
	}
	if want := demoAnswer("en", "What is tokencast?") + "\n"; out != want {
		t.Fatalf("stdout\n got %q\nwant %q", out, want)
	}
	if errOut != "" {
		t.Fatalf("stderr without --verbose: %q", errOut)
	}
}

func TestChatVerboseReportsTTFTAndUsage(t *testing.T) {
	s := start(t, "", nil, fast...)
	q := "How fast is it?"
	out, errOut, err := chatRun(t, s, nil, "", "--verbose", "--session", "cli-v", "--model", "demo:default", "--locale", "fr", q)
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut)
	}
	want := demoAnswer("fr", q)
	if out != want+"\n" {
		t.Fatalf("stdout\n got %q\nwant %q", out, want+"\n")
	}
	for _, part := range []string{
		"session cli-v\n", "ttft ", "tokens/s",
		"out " + itoa(len(demo.Tokens(want))), "model demo:default", "stop end_turn",
	} {
		if !strings.Contains(errOut, part) {
			t.Errorf("stderr %q lacks %q", errOut, part)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestChatFailsWithTheErrorCode(t *testing.T) {
	s := start(t, "", nil, fast...)
	out, _, err := chatRun(t, s, nil, "", "--session", "cli-err", "break "+demo.FailTrigger)
	if err == nil || !strings.Contains(err.Error(), chat.CodeProvider) {
		t.Fatalf("err %v, want one naming %s", err, chat.CodeProvider)
	}
	if exitCode(err) == 0 {
		t.Fatalf("exit status 0 for %v", err)
	}
	if !strings.HasSuffix(out, chat.ErrorText("en")+"\n") {
		t.Fatalf("stdout %q, want the localized apology at its end", out)
	}
}

func TestChatUnknownModelIsRefused(t *testing.T) {
	s := start(t, "", nil, fast...)
	_, _, err := chatRun(t, s, nil, "", "--model", "nope", "hi")
	if err == nil || !strings.Contains(err.Error(), chat.CodeUnknownModel) || exitCode(err) == 0 {
		t.Fatalf("err %v, want %s and a non-zero exit", err, chat.CodeUnknownModel)
	}
}

func TestChatAPIKeys(t *testing.T) {
	const key = "cli-secret-0123456789"
	s := start(t, "", map[string]string{"TOKENCAST_API_KEYS": "alice:" + key}, fast...)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"no key", nil, nil, false},
		{"wrong key", nil, []string{"--api-key", "wrong-key-0123456789"}, false},
		{"key from the environment", map[string]string{"TOKENCAST_API_KEY": key}, nil, true},
		{"key from the flag", nil, []string{"--api-key", key}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "Hello")
			out, _, err := chatRun(t, s, tc.env, "", args...)
			if tc.ok {
				if err != nil || out != demoAnswer("en", "Hello")+"\n" {
					t.Fatalf("err %v, stdout %q", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), chat.CodeUnauthenticated) || exitCode(err) == 0 {
				t.Fatalf("err %v, want %s and a non-zero exit", err, chat.CodeUnauthenticated)
			}
		})
	}
}

func TestChatWithoutServerFails(t *testing.T) {
	s := &server{addr: freeAddr(t)}
	_, _, err := chatRun(t, s, nil, "", "Hello")
	if err == nil || !strings.Contains(err.Error(), "CONNECTION") || exitCode(err) == 0 {
		t.Fatalf("err %v, want CONNECTION and a non-zero exit", err)
	}
}

func TestChatInteractiveRemembersTheConversation(t *testing.T) {
	s := start(t, "", nil, fast...)
	out, errOut, err := chatRun(t, s, nil, "first question\n\nsecond question\n", "--session", "cli-i")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut)
	}
	want := demoAnswer("en", "first question") + "\n" + demoAnswer("en", "first question", "second question") + "\n"
	if out != want {
		t.Fatalf("stdout\n got %q\nwant %q", out, want)
	}
	// The server holds the same conversation.
	_, resp := s.post(t, "", `query($s:String!){conversation(sessionId:$s){turns{role status}}}`, map[string]any{"s": "cli-i"})
	var data struct {
		Conversation struct {
			Turns []struct{ Role, Status string } `json:"turns"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil || len(data.Conversation.Turns) != 4 {
		t.Fatalf("conversation %s, want 4 turns", resp.Data)
	}
}

func TestChatInteractiveGoesOnAfterAFailedAnswer(t *testing.T) {
	s := start(t, "", nil, fast...)
	out, errOut, err := chatRun(t, s, nil, "boom "+demo.FailTrigger+"\nagain\n", "--session", "cli-ie")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, chat.CodeProvider) {
		t.Fatalf("stderr %q lacks %s", errOut, chat.CodeProvider)
	}
	if want := demoAnswer("en", "boom "+demo.FailTrigger, "again") + "\n"; !strings.HasSuffix(out, want) {
		t.Fatalf("stdout %q, want it to end with the second answer %q", out, want)
	}
}

// cancelOnWrite cancels a context at the first write: the user pressing
// Ctrl-C once the answer has started.
type cancelOnWrite struct {
	syncBuffer
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	w.cancel()
	return w.syncBuffer.Write(p)
}

func TestChatInterruptCancelsTheAnswerOnTheServer(t *testing.T) {
	s := start(t, "", nil, "--demo-ttft", "20ms", "--demo-token-interval", "50ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &cancelOnWrite{cancel: cancel}
	var errOut syncBuffer
	err := run(ctx, []string{"chat", "--url", "http://" + s.addr, "--session", "cli-int", "Interrupt me"}, func(string) string { return "" }, nil, out, &errOut)
	if !errors.Is(err, context.Canceled) || exitCode(err) == 0 {
		t.Fatalf("err %v, want context.Canceled and a non-zero exit", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, resp := s.post(t, "", `query($s:String!){conversation(sessionId:$s){turns{role status}}}`, map[string]any{"s": "cli-int"})
		if strings.Contains(string(resp.Data), `"role":"ASSISTANT","status":"CANCELLED"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("conversation %s, want the answer CANCELLED", resp.Data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedAnswer is the text of the session's last answer, as the server
// keeps it.
func storedAnswer(t *testing.T, s *server, key, session string) string {
	t.Helper()
	_, resp := s.post(t, key, `query($s:String!){conversation(sessionId:$s){turns{role text}}}`, map[string]any{"s": session})
	var data struct {
		Conversation struct {
			Turns []struct{ Role, Text string } `json:"turns"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil || len(data.Conversation.Turns) == 0 {
		t.Fatalf("conversation %s %+v", resp.Data, resp.Errors)
	}
	last := data.Conversation.Turns[len(data.Conversation.Turns)-1]
	if last.Role != "ASSISTANT" {
		t.Fatalf("the last turn is %s, want the answer", last.Role)
	}
	return last.Text
}

// inOrder reports the first of parts that s lacks after the ones before it.
func inOrder(s string, parts ...string) (missing string, ok bool) {
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return p, false
		}
		s = s[i+len(p):]
	}
	return "", true
}

// The demo agent run through chat: stdout is exactly the answer's text, as
// piped today; --verbose shows the run on stderr, in the order it ran, and
// without it stderr stays empty.
func TestChatAgentRun(t *testing.T) {
	s := start(t, "", nil, fast...)
	for _, tc := range []struct {
		name    string
		verbose bool
	}{{"quiet", false}, {"verbose", true}} {
		t.Run(tc.name, func(t *testing.T) {
			session := "cli-agent-" + tc.name
			args := []string{"--session", session, demo.AgentTrigger + " show me"}
			if tc.verbose {
				args = append([]string{"--verbose"}, args...)
			}
			out, errOut, err := chatRun(t, s, nil, "", args...)
			if err != nil {
				t.Fatalf("chat: %v\n%s", err, errOut)
			}
			text := storedAnswer(t, s, "", session)
			if !strings.HasPrefix(text, "The calculator says 6*7 = 42.") || out != text+"\n" {
				t.Fatalf("stdout\n got %q\nwant the answer %q", out, text+"\n")
			}
			if !tc.verbose {
				if errOut != "" {
					t.Fatalf("stderr without --verbose: %q", errOut)
				}
				return
			}
			if missing, ok := inOrder(errOut,
				"reasoning: "+demo.AgentReasoning+"\n",
				`→ calculator {"expression":"6*7"}`+"\n",
				"→ clock {}\n",
				"step 1 ended (tool_use); the run goes on\n",
				"step 2 ended (end_turn)\n",
				"stop end_turn",
			); !ok {
				t.Errorf("stderr lacks %q in its place:\n%s", missing, errOut)
			}
			for _, want := range []string{"← calculator 42 (", "← clock {"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks the result %q:\n%s", want, errOut)
				}
			}
		})
	}
}

// approvalRequired is the --config that makes the demo run's calculator
// call wait for the session owner.
const approvalRequired = "tools:\n  builtin.calculator: { approval: required }\n"

// deniedAnswer is the demo run's answer when the terminal says no.
const deniedAnswer = "The calculator could not answer: the user denied this tool call: denied at the terminal."

// The calculator call waits for approval: chat asks on stderr and reads
// the answer from stdin, in one-question and interactive mode. y lets the
// run go on; anything else, or no stdin at all, denies it and the model is
// told so.
func TestChatApprovalAtTheTerminal(t *testing.T) {
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA}
	s := start(t, "", env, append([]string{"--config", agentConfig(t, approvalRequired)}, fast...)...)
	alice := map[string]string{"TOKENCAST_API_KEY": keyA}
	const prompt = `approve calculator {"expression":"6*7"}? [y/N] `
	q := demo.AgentTrigger + " may I?"
	for _, tc := range []struct {
		name, stdin string
		args        []string
		stdout      func(string) bool
		stderr      []string // in order
	}{
		{"yes", "y\n", []string{q},
			func(out string) bool { return strings.Contains(out, "6*7 = 42") },
			[]string{prompt + "y\n"}},
		{"no", "n\n", []string{"--verbose", q},
			func(out string) bool { return out == deniedAnswer+"\n" },
			[]string{prompt + "n\n", "denied calculator: denied at the terminal\n", "← calculator failed: the user denied this tool call: denied at the terminal\n"}},
		{"anything else", "sure\n", []string{q},
			func(out string) bool { return out == deniedAnswer+"\n" },
			[]string{prompt + "sure\n"}},
		{"no stdin", "", []string{q},
			func(out string) bool { return out == deniedAnswer+"\n" },
			[]string{prompt + "(no answer: denied)\n"}},
		{"interactive", q + "\ny\nthen this\n", nil,
			func(out string) bool {
				first, second, _ := strings.Cut(out, "\n")
				return strings.Contains(first, "6*7 = 42") && second == demoAnswer("en", q, "then this")+"\n"
			},
			[]string{prompt + "y\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session := "cli-approve-" + strings.ReplaceAll(tc.name, " ", "-")
			out, errOut, err := chatRun(t, s, alice, tc.stdin, append([]string{"--session", session}, tc.args...)...)
			if err != nil {
				t.Fatalf("chat: %v\n%s", err, errOut)
			}
			if !tc.stdout(out) {
				t.Errorf("stdout %q", out)
			}
			if missing, ok := inOrder(errOut, tc.stderr...); !ok {
				t.Errorf("stderr lacks %q in its place:\n%s", missing, errOut)
			}
		})
	}
}

// While the prompt waits for stdin, chat goes on reading the run: when the
// owner approves from another device, the prompt is taken down and the
// run's answer arrives, with stdin still open.
func TestChatApprovalAnsweredElsewhere(t *testing.T) {
	env := map[string]string{"TOKENCAST_API_KEYS": "alice:" + keyA}
	s := start(t, "", env, append([]string{"--config", agentConfig(t, approvalRequired)}, fast...)...)
	stdin, typing := io.Pipe()
	defer typing.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"chat", "--url", "http://" + s.addr, "--api-key", keyA, "--verbose", "--session", "cli-elsewhere", demo.AgentTrigger + " elsewhere"},
			func(string) string { return "" }, stdin, &out, &errOut)
	}()
	waitFor(t, "the prompt", func() bool { return strings.Contains(errOut.String(), "? [y/N] ") })
	_, resp := s.post(t, keyA, `query($s:String!){conversation(sessionId:$s){turns{requestId}}}`, map[string]any{"s": "cli-elsewhere"})
	var data struct {
		Conversation struct {
			Turns []struct{ RequestID string } `json:"turns"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil || len(data.Conversation.Turns) == 0 {
		t.Fatalf("conversation %s", resp.Data)
	}
	if code := approve(t, s, keyA, "cli-elsewhere", data.Conversation.Turns[0].RequestID, demo.AgentCalcCall, true); code != "" {
		t.Fatalf("approving from another device: %s", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "6*7 = 42") {
		t.Errorf("stdout %q", out.String())
	}
	if missing, ok := inOrder(errOut.String(), "? [y/N] (answered elsewhere)\n", "approved calculator\n", "← calculator 42 ("); !ok {
		t.Errorf("stderr lacks %q in its place:\n%s", missing, errOut.String())
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
