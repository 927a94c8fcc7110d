package main

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver that keeps every span it gets.
type collector struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	spans    []*tracepb.Span
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := newCollectorOn(t, nil)
	c.Start()
	t.Cleanup(c.Close)
	return c
}

// newCollectorOn is a collector that has not started; ln, when set, is where
// it will listen.
func newCollectorOn(t *testing.T, ln net.Listener) *collector {
	t.Helper()
	c := &collector{}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		var req coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.requests++
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	if ln != nil {
		c.Listener.Close()
		c.Listener = ln
	}
	return c
}

func (c *collector) received() (int, []*tracepb.Span) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests, append([]*tracepb.Span(nil), c.spans...)
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

func TestAskToEndIsOneTrace(t *testing.T) {
	col := newCollector(t)
	s := start(t, "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL}, fast...)
	const question = "a secret question about zebras"
	c := subscribed(t, s, "s-traced", nil)
	req := s.ask(t, "", "s-traced", question, "en")
	if evs := c.answer("1", req); evs[len(evs)-1].Type != "END" {
		t.Fatalf("answer ended with %+v", evs[len(evs)-1])
	}
	c.conn.CloseNow()
	s.stop() // flushes the batch to the collector

	_, spans := col.received()
	byName := map[string]*tracepb.Span{}
	for _, sp := range spans {
		if spanAttr(sp, "tokencast.request") == req || sp.Name == "provider.stream" {
			byName[sp.Name] = sp
		}
		for _, kv := range sp.Attributes {
			if strings.Contains(kv.Value.String(), "zebras") {
				t.Errorf("span %s attribute %s holds the question text", sp.Name, kv.Key)
			}
		}
	}
	ask, answer, call := byName["ask"], byName["answer"], byName["provider.stream"]
	if ask == nil || answer == nil || call == nil {
		t.Fatalf("got spans %v, want ask, answer and provider.stream of request %s", names(spans), req)
	}
	trace := hex.EncodeToString(ask.TraceId)
	for _, sp := range []*tracepb.Span{answer, call} {
		if got := hex.EncodeToString(sp.TraceId); got != trace {
			t.Errorf("span %s is in trace %s, want the ask's %s", sp.Name, got, trace)
		}
	}
	if hex.EncodeToString(answer.ParentSpanId) != hex.EncodeToString(ask.SpanId) {
		t.Errorf("answer's parent is %x, want the ask span %x", answer.ParentSpanId, ask.SpanId)
	}
	if hex.EncodeToString(call.ParentSpanId) != hex.EncodeToString(answer.SpanId) {
		t.Errorf("provider.stream's parent is %x, want the answer span %x", call.ParentSpanId, answer.SpanId)
	}
	if got := spanAttr(answer, "tokencast.outcome"); got != "END" {
		t.Errorf("answer outcome %q, want END", got)
	}
	if got := spanAttr(ask, "tokencast.session"); got != "s-traced" {
		t.Errorf("ask session %q, want s-traced", got)
	}
}

// With no OTEL_EXPORTER_OTLP_* variable, nothing is exported: a collector
// listens where an OTLP/HTTP exporter sends by default (localhost:4318), on
// both loopback addresses, and must receive nothing.
func TestNoOTELVariablesExportNothing(t *testing.T) {
	// The SDK's default is HTTPS, which the collector cannot read: any
	// connection at all counts.
	var conns atomic.Int32
	for _, addr := range []string{"127.0.0.1:4318", "[::1]:4318"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "[::1]:4318" {
				continue // no IPv6 loopback here: localhost is 127.0.0.1
			}
			t.Fatalf("listen on the OTLP default %s: %v", addr, err)
		}
		col := newCollectorOn(t, ln)
		col.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
		col.Start()
		t.Cleanup(col.Close)
	}
	s := start(t, "", map[string]string{"OTEL_SERVICE_NAME": "quiet", "OTEL_BSP_SCHEDULE_DELAY": "10"}, fast...)
	c := subscribed(t, s, "s-untraced", nil)
	req := s.ask(t, "", "s-untraced", "anyone listening?", "en")
	c.answer("1", req)
	c.conn.CloseNow()
	s.stop()
	if n := conns.Load(); n != 0 {
		t.Fatalf("the OTLP default port got %d connections with no OTEL_EXPORTER_OTLP_* endpoint set", n)
	}
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name)
	}
	return out
}
