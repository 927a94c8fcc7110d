package chatcli

import (
	"context"
	"errors"
	"io"
	"testing"
)

// readSignal tells when a read of stdin begins.
type readSignal struct {
	io.Reader
	reading chan struct{}
}

func (r readSignal) Read(p []byte) (int, error) {
	select {
	case r.reading <- struct{}{}:
	default:
	}
	return r.Reader.Read(p)
}

// A line is read only when one is wanted, and a caller that stops waiting
// while the line is being read leaves it to the next caller: the answer
// typed for a prompt taken down is not lost.
func TestLinesGoToWhoeverAsksNext(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	reading := make(chan struct{}, 1)
	l := newLines(readSignal{r, reading})
	defer l.Close()

	ctx, stopWaiting := context.WithCancel(context.Background())
	go func() { <-reading; stopWaiting() }()
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a wait given up: %v", err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(w, "first\nsecond\n")
		if err == nil {
			err = w.Close()
		}
		wrote <- err
	}()
	for _, want := range []string{"first", "second"} {
		got, err := l.Next(context.Background())
		if err != nil || got != want {
			t.Fatalf("Next: %q, %v; want %q", got, err, want)
		}
	}
	if _, err := l.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last line: %v, want EOF", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// No stdin at all is a stdin that has ended.
func TestNoLines(t *testing.T) {
	l := newLines(nil)
	if _, err := l.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("Next without stdin: %v, want EOF", err)
	}
	l.Close()
}
