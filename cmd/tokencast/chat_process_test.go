package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/demo"
)

// chatProcess is `tokencast chat` as a separate process (the test binary
// acting as tokencast), so its exit status is the real one.
func chatProcess(s *server, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"chat", "--url", "http://" + s.addr}, args...)...)
	cmd.Env = []string{asBinary + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return cmd
}

// TestChatExitStatus: piped, chat prints the plain answer and exits 0; an
// answer that ends in ERROR exits non-zero with the code on stderr.
func TestChatExitStatus(t *testing.T) {
	s := start(t, "", nil, fast...)
	var out, errOut bytes.Buffer
	cmd := chatProcess(s, "--session", "cli-ok", "hello")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut.String())
	}
	if want := demoAnswer("en", "hello") + "\n"; out.String() != want {
		t.Fatalf("piped stdout %q, want the plain answer %q", out.String(), want)
	}

	out.Reset()
	errOut.Reset()
	cmd = chatProcess(s, "--session", "cli-fail", "break "+demo.FailTrigger)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("chat on a failing answer: %v, want a non-zero exit status", err)
	}
	if !strings.Contains(errOut.String(), chat.CodeProvider) {
		t.Fatalf("stderr %q lacks the code %s", errOut.String(), chat.CodeProvider)
	}
}

// TestChatOnATerminal: with stdout on a terminal, chat shows a waiting hint,
// erases it at the first token, then streams the answer.
func TestChatOnATerminal(t *testing.T) {
	s := start(t, "", nil, fast...)
	ptmx, pts := openPTY(t)
	cmd := chatProcess(s, "--session", "cli-tty", "hello there")
	cmd.Stdout, cmd.Stderr = pts, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close() // the child holds it
	var got bytes.Buffer
	copied := make(chan error, 1)
	go func() { _, err := io.Copy(&got, ptmx); copied <- err }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chat: %v\n%q", err, got.String())
	}
	<-copied // EIO once the child has closed its end
	screen := got.String()
	hint := strings.Index(screen, "\x1b[2m…\x1b[0m")
	erase := strings.Index(screen, "\b\x1b[K")
	answer := strings.Index(screen, demoAnswer("en", "hello there"))
	if hint < 0 || erase < hint || answer < erase {
		t.Fatalf("terminal output %q: want the hint, its erasure, then the answer", screen)
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal on this machine: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ptmx, pts
}

// TestChatApprovalWaitsForStdin: the tokencast process asks on stderr and
// waits for the line on its stdin, typed once the question is on screen.
func TestChatApprovalWaitsForStdin(t *testing.T) {
	s := start(t, "", nil, append([]string{"--config", agentConfig(t, approvalRequired)}, fast...)...)
	cmd := chatProcess(s, "--session", "cli-proc-approve", demo.AgentTrigger+" wait for me")
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	typing, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the prompt", func() bool { return strings.Contains(errOut.String(), "? [y/N] ") })
	if out.String() != "" {
		t.Fatalf("stdout %q before the approval", out.String())
	}
	if _, err := io.WriteString(typing, "y\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "The calculator says 6*7 = 42.") {
		t.Fatalf("stdout %q", out.String())
	}
	if want := `approve calculator {"expression":"6*7"}? [y/N] y` + "\n"; errOut.String() != want {
		t.Fatalf("stderr %q, want only the prompt and its answer %q", errOut.String(), want)
	}
}

// TestChatRunRestartedByAnotherWorker: the worker dies while chat's
// approval prompt waits; another worker takes the run over, and chat drops
// nothing it needs: the prompt is asked once, the lines of the first attempt
// stay, marked "(restarted)", the answer after the approval is exactly the
// answer's text.
func TestChatRunRestartedByAnotherWorker(t *testing.T) {
	config := agentConfig(t, approvalRequired)
	s, natsAddr := apiWithListeningNATS(t, "--config", config)
	w1 := spawn(t, workerArgs(natsAddr, "--config", config)...)
	const session = "cli-restart"
	stdin, typing := io.Pipe()
	defer typing.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"chat", "--url", "http://" + s.addr, "--verbose", "--session", session, demo.AgentTrigger + " survive"},
			func(string) string { return "" }, stdin, &out, &errOut)
	}()
	waitFor(t, "the prompt", func() bool { return strings.Contains(errOut.String(), "? [y/N] ") })

	// Another subscriber sees the new attempt ask again, so the answer is
	// typed only once the run was taken over.
	_, resp := s.post(t, "", `query($s:String!){conversation(sessionId:$s){turns{requestId}}}`, map[string]any{"s": session})
	var data struct {
		Conversation struct {
			Turns []struct{ RequestID string } `json:"turns"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(resp.Data, &data); err != nil || len(data.Conversation.Turns) == 0 {
		t.Fatalf("conversation %s", resp.Data)
	}
	watcher := agentSubscribed(t, s, session, "", "")
	w1.kill()
	spawn(t, workerArgs(natsAddr, "--config", config)...)
	restarted := false
	watcher.agentEvents(data.Conversation.Turns[0].RequestID, func(ev agentEvent) bool {
		restarted = restarted || ev.Type == "RESTART"
		return restarted && ev.Type == "APPROVAL_REQUESTED"
	})

	if _, err := io.WriteString(typing, "y\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("chat: %v\n%s", err, errOut.String())
	}
	if text := storedAnswer(t, s, "", session); out.String() != text+"\n" || !strings.Contains(text, "6*7 = 42") {
		t.Fatalf("stdout %q, want the answer %q", out.String(), text+"\n")
	}
	stderr := errOut.String()
	if n := strings.Count(stderr, "[y/N]"); n != 1 {
		t.Errorf("asked %d times:\n%s", n, stderr)
	}
	if missing, ok := inOrder(stderr, "→ calculator", "[y/N] y\n", "(restarted)\n", "→ calculator", "approved calculator\n", "← calculator 42 ("); !ok {
		t.Errorf("stderr lacks %q in its place:\n%s", missing, stderr)
	}
}
