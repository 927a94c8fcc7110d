package main

import (
	"context"
	"encoding/json"
	"errors"
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
