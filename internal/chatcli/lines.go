package chatcli

import (
	"bufio"
	"context"
	"io"
	"sync"
)

// lines is stdin, read a line at a time and only when a line is wanted:
// interactive mode's questions and the answers to approval prompts come from
// the same stdin, each line to whoever asks for it next. A read waits in its
// own goroutine, so whoever waits for a line can stop waiting (the approval
// was answered elsewhere, the user pressed Ctrl-C); the line being read then
// goes to the next caller.
type lines struct {
	in      *bufio.Scanner
	want    chan struct{}
	got     chan line // capacity 1: at most one line is read ahead of its taker
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex // one caller at a time; guards started and asked
	started bool
	asked   bool // a line was asked for and not yet taken
}

type line struct {
	text string
	err  error
}

// newLines reads r; nil when there is no stdin, whose Next is always io.EOF.
func newLines(r io.Reader) *lines {
	if r == nil {
		return nil
	}
	in := bufio.NewScanner(r)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	return &lines{in: in, want: make(chan struct{}), got: make(chan line, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Next returns the next line of stdin, io.EOF at its end, or ctx's error
// when ctx ends first.
func (l *lines) Next(ctx context.Context) (string, error) {
	if l == nil {
		return "", io.EOF
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started = true
		go l.read()
	}
	if !l.asked {
		select {
		case l.want <- struct{}{}:
			l.asked = true
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	select {
	case ln := <-l.got:
		l.asked = false
		return ln.text, ln.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// read reads one line each time one is wanted.
func (l *lines) read() {
	defer close(l.done)
	for {
		select {
		case <-l.want:
		case <-l.stop:
			return
		}
		var ln line
		if l.in.Scan() {
			ln.text = l.in.Text()
		} else if ln.err = l.in.Err(); ln.err == nil {
			ln.err = io.EOF
		}
		l.got <- ln
	}
}

// Close stops the reading goroutine. When a read is under way it is not
// waited for: a read of a terminal cannot be interrupted, and it ends with
// the process (or at the next line typed).
func (l *lines) Close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.stop)
	if l.started && !l.asked {
		<-l.done
	}
}
