package orchestrator

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

type flushes struct {
	mu  sync.Mutex
	got []string
}

func (f *flushes) flush(text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, text)
	return nil
}

func (f *flushes) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func TestCoalescer(t *testing.T) {
	chunks := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	cases := []struct {
		name string
		cfg  Coalescing
		want []string
	}{
		{"every chunk", Coalescing{}, chunks},
		{"first alone, then by count (the sample's 6)", Coalescing{Window: time.Hour, Chunks: 6}, []string{"a", "bcdefg", "h"}},
		{"first alone, then by size", Coalescing{Window: time.Hour, Bytes: 3}, []string{"a", "bcd", "efg", "h"}},
		{"first alone, the rest at close", Coalescing{Window: time.Hour}, []string{"a", "bcdefgh"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &flushes{}
			c := newCoalescer(tc.cfg, f.flush)
			for _, ch := range chunks {
				if err := c.Add(ch); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if got := f.snapshot(); !slices.Equal(got, tc.want) {
				t.Fatalf("flushed %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("the window flushes without more chunks", func(t *testing.T) {
		f := &flushes{}
		c := newCoalescer(Coalescing{Window: 20 * time.Millisecond}, f.flush)
		_ = c.Add("a")
		_ = c.Add("b")
		deadline := time.Now().Add(5 * time.Second)
		for len(f.snapshot()) < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := f.snapshot(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("flushed %q before close", got)
		}
		_ = c.Close()
	})
}

// A coalescer stops at its first failed flush and at its end: what comes
// after is refused, never flushed.
func TestCoalescerStops(t *testing.T) {
	t.Run("a failed flush refuses the chunks after it", func(t *testing.T) {
		full := errors.New("no space left")
		var got []string
		c := newCoalescer(Coalescing{}, func(text string) error {
			got = append(got, text)
			if text == "b" {
				return full
			}
			return nil
		})
		for _, ch := range []string{"a", "b", "c"} {
			if err := c.Add(ch); (ch == "a") != (err == nil) || (err != nil && !errors.Is(err, full)) {
				t.Errorf("Add(%q) = %v", ch, err)
			}
		}
		if err := c.Close(); !errors.Is(err, full) {
			t.Errorf("Close() = %v, want the flush's failure", err)
		}
		if want := []string{"a", "b"}; !slices.Equal(got, want) {
			t.Errorf("flushed %q, want %q", got, want)
		}
	})
	t.Run("nothing is flushed after close", func(t *testing.T) {
		f := &flushes{}
		c := newCoalescer(Coalescing{}, f.flush)
		_ = c.Add("a")
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Add("b"); !errors.Is(err, errClosed) {
			t.Errorf("Add after Close = %v, want errClosed", err)
		}
		if got := f.snapshot(); !slices.Equal(got, []string{"a"}) {
			t.Errorf("flushed %q", got)
		}
	})
	t.Run("abandon drops what is buffered", func(t *testing.T) {
		f := &flushes{}
		c := newCoalescer(Coalescing{Window: time.Hour}, f.flush)
		_ = c.Add("a")
		_ = c.Add("b")
		c.Abandon()
		if err := c.Close(); !errors.Is(err, errClosed) {
			t.Errorf("Close after Abandon = %v, want errClosed", err)
		}
		if got := f.snapshot(); !slices.Equal(got, []string{"a"}) {
			t.Errorf("flushed %q", got)
		}
	})
	t.Run("the window flushes with no chunk after it", func(t *testing.T) {
		flushed := make(chan string, 4)
		c := newCoalescer(Coalescing{Window: time.Millisecond}, func(text string) error {
			flushed <- text
			return nil
		})
		_ = c.Add("a")
		_ = c.Add("b")
		for _, want := range []string{"a", "b"} {
			if got := await(t, "a flush", flushed); got != want {
				t.Errorf("flushed %q, want %q", got, want)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkCoalescer(b *testing.B) {
	f := func(string) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		c := newCoalescer(Coalescing{Window: time.Hour, Bytes: 512}, f)
		for range 64 {
			_ = c.Add("token ")
		}
		_ = c.Close()
	}
}
