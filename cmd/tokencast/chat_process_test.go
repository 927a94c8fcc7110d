package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

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
