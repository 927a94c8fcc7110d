package orchestrator

import (
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
