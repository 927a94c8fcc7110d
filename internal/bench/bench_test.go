package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runJSON runs the bench with args and --json and decodes its one object.
func runJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	cfg, err := Parse(append(args, "--json"), func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Run(ctx, cfg, &stdout, &stderr); err != nil {
		t.Fatalf("bench %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	var rep map[string]any
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	if dec.More() {
		t.Fatalf("more than one JSON value in the output")
	}
	return rep
}

// checkLoad asserts what a user of the figures relies on: nothing lost or
// duplicated, every figure present and not negative. Never speed.
func checkLoad(t *testing.T, rep map[string]any, tokens float64) {
	t.Helper()
	for _, key := range []string{"lost", "duplicated", "reordered", "index_errors", "unended_subscribers", "stream_errors", "ask_errors"} {
		if v, ok := rep[key].(float64); !ok || v != 0 {
			t.Errorf("%s = %v, want 0", key, rep[key])
		}
	}
	for _, key := range []string{"tokens_per_s", "frames_per_s", "cpu_seconds", "cpu_cores", "rss_bytes", "duration_s"} {
		if v, ok := rep[key].(float64); !ok || v < 0 {
			t.Errorf("%s = %v, want a number ≥ 0", key, rep[key])
		}
	}
	if rep["tokens_delivered"] != tokens || rep["tokens_expected"] != tokens {
		t.Errorf("delivered %v of %v tokens, want %v", rep["tokens_delivered"], rep["tokens_expected"], tokens)
	}
	for _, key := range []string{"added_ttft_ms", "inter_token_ms", "ask_to_first_delta_ms"} {
		l, ok := rep[key].(map[string]any)
		if !ok {
			t.Errorf("%s missing: %v", key, rep[key])
			continue
		}
		for _, q := range []string{"p50", "p90", "p99", "p999", "max"} {
			if v, ok := l[q].(float64); !ok || v < 0 {
				t.Errorf("%s.%s = %v, want a number ≥ 0", key, q, l[q])
			}
		}
		if l["count"].(float64) <= 0 {
			t.Errorf("%s has no samples", key)
		}
	}
}

func TestLoadDeliversEveryTokenOnceToEverySubscriber(t *testing.T) {
	for _, dialect := range []string{DialectTransportWS, DialectAppSync, DialectSSE, DialectEvents, DialectAISDK, DialectAGUI} {
		t.Run(dialect, func(t *testing.T) {
			rep := runJSON(t, "--dialect", dialect, "--sessions", "3", "--subscribers", "2", "--tokens", "12",
				"--token-rate", "200", "--first-token-delay", "5ms", "--ramp", "50ms")
			if rep["mode"] != "load" || rep["dialect"] != dialect {
				t.Errorf("mode %v dialect %v", rep["mode"], rep["dialect"])
			}
			checkLoad(t, rep, 3*2*12)
			if _, ok := rep["agent"]; ok {
				t.Errorf("a plain run reports agent figures: %v", rep["agent"])
			}
		})
	}
}

func TestAgentStepsAreMeasured(t *testing.T) {
	for _, dialect := range []string{DialectTransportWS, DialectAppSync, DialectSSE, DialectEvents} {
		t.Run(dialect, func(t *testing.T) {
			rep := runJSON(t, "--dialect", dialect, "--agent-steps", "2", "--sessions", "3", "--subscribers", "2", "--tokens", "6",
				"--token-rate", "200", "--first-token-delay", "5ms", "--ramp", "50ms")
			// Every token, every event index, every END, as for text.
			checkLoad(t, rep, 3*2*6)
			agent, ok := rep["agent"].(map[string]any)
			if !ok {
				t.Fatalf("no agent figures: %v", rep)
			}
			for key, want := range map[string]float64{
				"tool_steps_per_answer": 2,
				"tool_results_expected": 3 * 2 * 2, "tool_results": 3 * 2 * 2, "tool_errors": 0,
				"step_events_expected": 3 * 2 * 3, "step_events": 3 * 2 * 3,
			} {
				if agent[key] != want {
					t.Errorf("agent.%s = %v, want %v", key, agent[key], want)
				}
			}
			// 3 model calls of 5 ms, then 5 more tokens 5 ms apart.
			if agent["model_time_ms"] != 40.0 {
				t.Errorf("agent.model_time_ms = %v, want 40", agent["model_time_ms"])
			}
			samples := map[string]float64{
				"added_per_step_ms": 3 * 2, "added_per_answer_ms": 3 * 2, "ask_to_first_model_call_ms": 3 * 2,
				"last_token_to_end_ms": 3 * 2, "tool_duration_per_answer_ms": 3 * 2,
				"step_turnaround_ms": 3 * 2, // per tool step of each answer, not per subscriber
			}
			for key, count := range samples {
				l, ok := agent[key].(map[string]any)
				if !ok {
					t.Errorf("agent.%s missing", key)
					continue
				}
				for _, q := range []string{"p50", "p90", "p99", "p999", "max"} {
					if v, ok := l[q].(float64); !ok || v < 0 {
						t.Errorf("agent.%s.%s = %v, want a number ≥ 0", key, q, l[q])
					}
				}
				if l["count"] != count {
					t.Errorf("agent.%s has %v samples, want %v", key, l["count"], count)
				}
			}
		})
	}
}

func TestAgentStepsNeedTheInProcessServer(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agent-steps", "-1"}, "--agent-steps: from 0"},
		{[]string{"--agent-steps", "101"}, "--agent-steps: from 0"},
		{[]string{"--agent-steps", "3", "--target", "http://127.0.0.1:1/graphql", "--model", "openai:x"}, "needs the in-process server"},
		{[]string{"--agent-steps", "3", "--floor"}, "the floor server has no agent runs"},
		{[]string{"--agent-steps", "3", "--dialect", "aisdk"}, "does not carry"},
		{[]string{"--agent-steps", "3", "--dialect", "agui"}, "does not carry"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := Parse(tc.args, func(string) string { return "" }, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestCoalescedFramesStillCountEveryToken(t *testing.T) {
	rep := runJSON(t, "--sessions", "2", "--tokens", "30", "--token-rate", "500", "--first-token-delay", "1ms",
		"--server-args", "--coalesce-window 20ms")
	checkLoad(t, rep, 2*2*30)
	if rep["delta_frames"].(float64) >= 2*2*30 {
		t.Errorf("%v DELTA frames for 120 tokens: the server did not coalesce, the test proves nothing", rep["delta_frames"])
	}
}

func TestFloorRunsTheSameLoad(t *testing.T) {
	rep := runJSON(t, "--floor", "--sessions", "2", "--tokens", "10", "--token-rate", "200", "--first-token-delay", "1ms")
	checkLoad(t, rep, 2*2*10)
	floor, ok := rep["floor"].(map[string]any)
	if !ok {
		t.Fatalf("no floor figures: %v", rep)
	}
	checkLoad(t, floor, 2*2*10)
	ratios, ok := rep["ratio_to_floor"].(map[string]any)
	if !ok || ratios["added_ttft_p50"] == nil || ratios["inter_token_p99"] == nil {
		t.Fatalf("ratio_to_floor = %v", rep["ratio_to_floor"])
	}
}

func TestIdleReportsCostPerConnection(t *testing.T) {
	rep := runJSON(t, "--idle", "20", "--idle-client", "inproc")
	if rep["mode"] != "idle" || rep["connections"] != 20.0 {
		t.Fatalf("report %v", rep)
	}
	for _, key := range []string{"mem_per_conn_bytes", "heap_per_conn_bytes", "goroutines_per_conn"} {
		if _, ok := rep[key].(float64); !ok {
			t.Errorf("%s = %v, want a number", key, rep[key])
		}
	}
	// Each subscribed connection holds at least its reader.
	if g := rep["goroutines_per_conn"].(float64); g < 1 {
		t.Errorf("goroutines_per_conn = %v: the connections were not held", g)
	}
}

func TestTokenMarkersSurviveCoalescing(t *testing.T) {
	var text string
	for seq := range 20 {
		text += tokenText(7, seq, 12)
	}
	var got []int
	parseTokens("noise ~zz "+text+" ~3", func(id, seq int) {
		if id != 7 {
			t.Errorf("id %d", id)
		}
		got = append(got, seq)
	})
	if len(got) != 20 || got[0] != 0 || got[19] != 19 {
		t.Fatalf("parsed %v", got)
	}
	if n := len(tokenText(0x7fff, 0xffff, 4)); n < 4 {
		t.Fatalf("token shorter than its marker: %d", n)
	}
}

func TestOpenAIFakeSpeaksChatCompletionsStreaming(t *testing.T) {
	llm := &fakeLLM{script: Script{Rate: 1000, TokenSize: 12, Tokens: 5}, clock: newClock(), streams: &streams{}}
	st := llm.streams.add(5, 0)
	srv := httptest.NewServer(llm.openAIHandler())
	defer srv.Close()
	body := `{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"` + question(st.id) + `"}]}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var text string
	var usage, done bool
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		for _, c := range chunk.Choices {
			text += c.Delta.Content
		}
		if chunk.Usage != nil {
			usage = chunk.Usage.CompletionTokens == 5
		}
	}
	n := 0
	parseTokens(text, func(id, seq int) {
		if id == st.id && seq == n && st.emitted[seq].Load() > 0 {
			n++
		}
	})
	if n != 5 || !usage || !done {
		t.Fatalf("got %d of 5 tokens in order with emission times, usage %v, [DONE] %v: %q", n, usage, done, text)
	}
}
