package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkEventPath is the server's whole path for a token, from the
// provider's chunk to the frame bytes on a subscriber's WebSocket: the
// worker, the durable append, live delivery, the subscription's encoding and
// the write. 100 answers stream at once, as fast as the server takes their
// tokens, with no coalescing; an op is one delivered DELTA frame. The
// subscribers read frames into a reused buffer and decode nothing, so the
// allocations per op are the server's, plus each answer's ask and its START
// and END spread over its tokens.
func BenchmarkEventPath(b *testing.B) {
	const sessions = 100
	tokens := max(b.N/sessions, 1)
	cfg := &Config{Sessions: sessions, Script: Script{TokenSize: 16, Tokens: tokens}}
	llm := &fakeLLM{script: cfg.Script, clock: newClock(), streams: &streams{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv, err := startInProcess(ctx, cfg, llm, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.stop()
	dialect := &transportWS{url: wsURL(srv.url), query: subscription(false)}
	conns := make([]*websocket.Conn, sessions)
	for i := range conns {
		sub, err := dialect.Subscribe(ctx, "path-"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = sub.(*wsSubscriber).conn
		defer conns[i].Close()
	}
	asker := &graphqlAsker{url: srv.url, model: FakeModel, client: &http.Client{}}
	ids := make([]int, sessions)
	for i := range ids {
		ids[i] = llm.streams.add(tokens, 0).id
	}

	b.ReportAllocs()
	b.ResetTimer()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		deltas int
	)
	for i, conn := range conns {
		wg.Go(func() {
			n, err := readAnswer(conn)
			if err != nil {
				b.Error(err)
			}
			mu.Lock()
			deltas += n
			mu.Unlock()
		})
		if err := asker.ask(ctx, "path-"+strconv.Itoa(i), "r"+strconv.Itoa(i), question(ids[i])); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	if deltas != sessions*tokens {
		b.Fatalf("%d DELTA frames delivered, want %d", deltas, sessions*tokens)
	}
}

// readAnswer reads one answer's frames without decoding them, and counts its
// DELTAs.
func readAnswer(conn *websocket.Conn) (int, error) {
	var (
		buf    bytes.Buffer
		deltas int
	)
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return deltas, err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return deltas, err
		}
		switch frame := buf.Bytes(); {
		case bytes.Contains(frame, []byte(`"type":"DELTA"`)):
			deltas++
		case bytes.Contains(frame, []byte(`"type":"END"`)):
			return deltas, nil
		case bytes.Contains(frame, []byte(`"type":"ERROR"`)), bytes.Contains(frame, []byte(`"type":"error"`)):
			return deltas, io.ErrUnexpectedEOF
		}
	}
}
