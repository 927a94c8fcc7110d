package wsproto

import (
	"bytes"
	"testing"
)

// A client that stops reading holds at most the byte bound, however few
// frames that is: 200 results of 32 KiB are not 6 MB of server memory.
func TestOutboxIsBoundedInBytes(t *testing.T) {
	const maxBytes = 256 << 10
	started := 0
	o := newOutbox(256, maxBytes, func() { started++ }) // the writer never runs: the client does not read
	frame := bytes.Repeat([]byte("x"), 32<<10)
	pushed := 0
	for range 200 {
		if !o.push(frame) {
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
	batch, _ := o.next()
	if len(batch) != pushed || o.push(frame) {
		t.Fatalf("took %d frames; a push while they are written was accepted", len(batch))
	}
	if batch, _ := o.next(); batch != nil {
		t.Fatalf("a second batch of %d", len(batch))
	}
	if !o.push(frame) {
		t.Fatal("room came back after the batch was written, but the push was refused")
	}

	// A single frame larger than the bound goes when nothing else waits.
	big := newOutbox(256, 1024, func() {})
	if !big.push(bytes.Repeat([]byte("y"), 4096)) || big.push([]byte("z")) {
		t.Fatal("a lone large frame was refused, or a second one taken beside it")
	}
	// The frame bound still holds.
	few := newOutbox(2, 0, func() {})
	if !few.push(nil) || !few.push(nil) || few.push(nil) {
		t.Fatal("the frame bound did not hold")
	}
}
