package stream

import (
	"bytes"
	"testing"
)

// A client that stops reading holds at most the byte bound, however few
// frames that is: 200 results of 32 KiB are not 6 MB of server memory.
func TestOutboxIsBoundedInBytes(t *testing.T) {
	const maxBytes = 256 << 10
	started := 0
	o := NewOutbox(256, maxBytes, func() { started++ }) // the writer never runs: the client does not read
	frame := bytes.Repeat([]byte("x"), 32<<10)
	pushed := 0
	for range 200 {
		if !o.Push(frame) {
			break
		}
		pushed++
	}
	if pushed*len(frame) > maxBytes || pushed != maxBytes/len(frame) {
		t.Fatalf("queued %d frames of %d bytes with a bound of %d", pushed, len(frame), maxBytes)
	}
	if started != 1 {
		t.Fatalf("%d writers started", started)
	}

	// What the writer has taken still counts until it comes back for more.
	batch, _ := o.Next()
	if len(batch) != pushed || o.Push(frame) {
		t.Fatalf("took %d frames; a push while they are written was accepted", len(batch))
	}
	if batch, _ := o.Next(); batch != nil {
		t.Fatalf("a second batch of %d", len(batch))
	}
	if !o.Push(frame) {
		t.Fatal("room came back after the batch was written, but the push was refused")
	}

	// A single frame larger than the bound goes when nothing else waits.
	big := NewOutbox(256, 1024, func() {})
	if !big.Push(bytes.Repeat([]byte("y"), 4096)) || big.Push([]byte("z")) {
		t.Fatal("a lone large frame was refused, or a second one taken beside it")
	}
	// The frame bound still holds.
	few := NewOutbox(2, 0, func() {})
	if !few.Push(nil) || !few.Push(nil) || few.Push(nil) {
		t.Fatal("the frame bound did not hold")
	}
}
