package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size bytes for a data dir, so a test can fill
// it. Mounting needs root, which CI has.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs this test as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs: %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return filepath.Join(dir, "data")
}

// fillDisk writes a file in dir until the disk has no space left, and
// returns a function that removes it.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(filepath.Dir(dir), "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk stopped with %v, want ENOSPC", err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// readiness is /readyz's status and body.
func readiness(t *testing.T, s *server) (int, string) {
	t.Helper()
	return s.get(t, "/readyz")
}

// get is the status and body of a GET of path.
func (s *server) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A disk that fills up mid-answer ends the answer visibly: its subscribers
// get the apology and ERROR with STORAGE_UNAVAILABLE, readiness turns
// false, new questions are refused with the same code, and once space is
// freed and the server restarted the answer is finished and stored.
func TestFullDiskEndsAnswersLoudly(t *testing.T) {
	dir := smallDisk(t, "32m")
	s := start(t, dir, nil, "--demo-token-interval", "40ms", "--demo-repeat", "20", "--ack-wait", "3s")
	c := subscribed(t, s, "full-disk", nil)
	request := s.ask(t, "", "full-disk", "a long answer, please", "en")
	for ev := c.next("1"); ev.Type != "DELTA"; ev = c.next("1") {
	}
	free := fillDisk(t, dir)

	// The events after the last one stored, until the end, with no gap.
	var tail []event
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := c.must(time.Until(deadline))
		if m.Type != "next" {
			t.Fatalf("got %s %s, want the answer's events", m.Type, m.Payload)
		}
		ev := decodeNext(t, m)
		if ev.RequestID != request {
			t.Fatalf("an event of another answer: %+v", ev)
		}
		if ev.Cursor != "" {
			tail = tail[:0] // still stored
		}
		tail = append(tail, ev)
		if ev.Type == "END" || ev.Type == "CANCELLED" {
			t.Fatalf("the answer ended with %s on a full disk", ev.Type)
		}
		if ev.Type == "ERROR" {
			break
		}
	}
	if got := types(tail); !strings.HasSuffix(got, "MESSAGE DELTA ERROR]") {
		t.Fatalf("the answer ended with %s, want a second start, the apology and ERROR", got)
	}
	end := tail[len(tail)-1]
	if end.Error == nil || end.Error.Code != "STORAGE_UNAVAILABLE" {
		t.Fatalf("ERROR %+v, want code STORAGE_UNAVAILABLE", end.Error)
	}
	if apology := tail[len(tail)-2].Message; apology != "Sorry, I was not able to answer your question." {
		t.Fatalf("apology %q", apology)
	}
	for i := 1; i < len(tail); i++ {
		if *tail[i].Index != *tail[i-1].Index+1 {
			t.Fatalf("indexes jump: %s", types(tail))
		}
	}

	if status, body := readiness(t, s); status != http.StatusServiceUnavailable || !strings.Contains(body, `"storage"`) || !strings.Contains(body, "space") {
		t.Fatalf("/readyz on a full disk: %d %s, want 503 naming the storage", status, body)
	}
	status, resp := s.post(t, "", askQuery, map[string]any{"input": map[string]any{"sessionId": "full-disk", "message": "again", "locale": "en"}})
	if status != http.StatusOK || len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != "STORAGE_UNAVAILABLE" {
		t.Fatalf("ask on a full disk: %d %+v, want STORAGE_UNAVAILABLE", status, resp.Errors)
	}
	if !strings.Contains(s.stderr.String(), "STORAGE_UNAVAILABLE") {
		t.Errorf("the log does not say why answers end:\n%s", s.stderr)
	}
	c.conn.CloseNow()

	// Space is freed; the restarted server finishes the answer and keeps it.
	free()
	s.stop()
	s = start(t, dir, nil, "--demo-token-interval", "1ms", "--ack-wait", "3s")
	for deadline := time.Now().Add(60 * time.Second); ; {
		turns := s.conversation(t, "", "full-disk")
		if len(turns) == 2 && turns[1].Status != "IN_PROGRESS" {
			// Finished anew, or ended where the full disk cut it.
			if (turns[1].Status != "COMPLETE" && turns[1].Status != "INCOMPLETE") || turns[1].Text == "" {
				t.Fatalf("after the restart the answer is %+v, want it finished or kept incomplete", turns[1])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the conversation after the restart: %+v", turns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()

	// Started on a full disk, the server says so.
	fillDisk(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", freeAddr(t), "--data-dir", dir}, func(string) string { return "" }, nil, io.Discard, stderr)
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "the store cannot write"); {
		if time.Now().After(deadline) {
			t.Fatalf("started on a full disk, the server did not say so:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server started on a full disk did not stop")
	}
}
