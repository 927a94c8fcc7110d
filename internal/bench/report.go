package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Count int64   `json:"count"`
}

// latencyOf summarises samples in nanoseconds with an HDR histogram (1 ns to
// 10 minutes, 3 significant digits).
func latencyOf(samples []int64) Latency {
	h := hdrhistogram.New(1, int64(10*time.Minute), 3)
	for _, v := range samples {
		_ = h.RecordValue(max(v, 1))
	}
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(v int64) float64 { return round3(float64(v) / 1e6) }
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Count: h.TotalCount(),
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// LoadReport is the summary of one open-loop run.
type LoadReport struct {
	Server            string  `json:"server"`
	Dialect           string  `json:"dialect"`
	Sessions          int     `json:"sessions"`
	Subscribers       int     `json:"subscribers_per_session"`
	ArrivalsPerSecond float64 `json:"arrivals_per_s"`
	TokenRate         float64 `json:"token_rate_per_s"`
	Tokens            int     `json:"tokens_per_answer"`
	TokenBytes        int     `json:"token_bytes"`
	FirstTokenDelayMS float64 `json:"first_token_delay_ms"`

	AddedTTFT  Latency `json:"added_ttft_ms"`
	InterToken Latency `json:"inter_token_ms"`
	// AskToFirstDelta includes the queue, the worker and the fake LLM's
	// first-token delay: what a user waits for, not what tokencast adds.
	AskToFirstDelta Latency `json:"ask_to_first_delta_ms"`

	TokensPerSecond float64 `json:"tokens_per_s"`
	FramesPerSecond float64 `json:"frames_per_s"`
	TokensExpected  int64   `json:"tokens_expected"`
	TokensDelivered int64   `json:"tokens_delivered"`
	Frames          int64   `json:"frames"`
	DeltaFrames     int64   `json:"delta_frames"`
	Lost            int64   `json:"lost"`
	Duplicated      int64   `json:"duplicated"`
	Reordered       int64   `json:"reordered"`
	IndexErrors     int64   `json:"index_errors"`
	Unended         int64   `json:"unended_subscribers"`
	StreamErrors    int64   `json:"stream_errors"`
	AskErrors       int64   `json:"ask_errors"`
	DurationS       float64 `json:"duration_s"`

	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"`
	CPUScope   string  `json:"cpu_scope"`
	RSSBytes   int64   `json:"rss_bytes"`
	RSSPeak    int64   `json:"rss_peak_bytes"`

	// Agent is what the tool steps of agent answers cost (--agent-steps).
	Agent *AgentReport `json:"agent,omitempty"`

	Errors []string `json:"errors,omitempty"`
}

// AgentReport is what tokencast adds to agent answers of ToolSteps tool
// steps (each a model call that calls the built-in calculator) and a text
// step, beyond the model's and the tools' own time.
type AgentReport struct {
	ToolSteps int `json:"tool_steps_per_answer"`
	// ModelTimeMS is the fake model's own time in an answer, by its
	// schedule: a first-token delay per model call (ToolSteps + 1), then
	// the text's tokens up to the last.
	ModelTimeMS float64 `json:"model_time_ms"`
	// AddedPerAnswer is, per answer and subscriber, END received − ask
	// sent − ModelTimeMS − the durationMs of its TOOL_RESULTs: the ask, the
	// queue, every step's publishing, storing and tool call machinery, and
	// the delivery of the last token and END.
	AddedPerAnswer Latency `json:"added_per_answer_ms"`
	// AddedPerStep is, per tool step, the time from the end of its model
	// call's delay (the model's own time, as its timer fired) to the start
	// of the next model call, less the durationMs of the step's
	// TOOL_RESULT (the tool's own time, as tokencast timed the call):
	// handing over the call's parts, storing the step and the result,
	// publishing the events, calling the next step.
	AddedPerStep Latency `json:"added_per_step_ms"`
	// StepTurnaround is, per tool step, the fake model's view of the
	// worker: from the return of the model call that asked for the tool to
	// the start of the next model call, the tool's own time included.
	StepTurnaround Latency `json:"step_turnaround_ms"`
	// AskToFirstCall (ask sent → the first model call began: the ask, the
	// queue, the worker's start) and LastTokenToEnd (the last token emitted
	// → END received) are the parts of AddedPerAnswer that a plain answer
	// has too.
	AskToFirstCall Latency `json:"ask_to_first_model_call_ms"`
	LastTokenToEnd Latency `json:"last_token_to_end_ms"`
	// ToolTime is, per answer, the sum of its TOOL_RESULTs' durationMs.
	ToolTime Latency `json:"tool_duration_per_answer_ms"`

	// Every subscriber must see ToolSteps TOOL_RESULTs, none an error, and
	// ToolSteps + 1 STEP events.
	ToolResultsExpected int64 `json:"tool_results_expected"`
	ToolResults         int64 `json:"tool_results"`
	ToolErrors          int64 `json:"tool_errors"`
	StepEventsExpected  int64 `json:"step_events_expected"`
	StepEvents          int64 `json:"step_events"`
}

// complete reports whether every subscriber saw every step of its run.
func (a *AgentReport) complete() bool {
	return a.ToolResults == a.ToolResultsExpected && a.ToolErrors == 0 && a.StepEvents == a.StepEventsExpected
}

// summariseAgent measures the agent answers of a run.
func summariseAgent(res *loadResult, script Script) *AgentReport {
	steps := script.AgentSteps
	model := int64(script.modelTime())
	a := &AgentReport{ToolSteps: steps, ModelTimeMS: round3(float64(model) / 1e6)}
	var perAnswer, tools, turnaround, first, tail []int64
	for _, s := range res.subs {
		a.ToolResultsExpected += int64(steps)
		a.StepEventsExpected += int64(steps) + 1
		a.ToolResults += s.toolResults
		a.ToolErrors += s.toolErrors
		a.StepEvents += s.stepEvents
		if s.ended != "END" || s.toolResults != int64(steps) {
			continue
		}
		toolTime := s.toolNanos
		added := max(s.endAt-s.ask.Load()-model-toolTime, 0)
		perAnswer = append(perAnswer, added)
		tools = append(tools, toolTime)
		if began := s.stream.steps[0].began.Load(); began > 0 {
			first = append(first, max(began-s.ask.Load(), 0))
		}
		if last := s.stream.emitted[len(s.stream.emitted)-1].Load(); last > 0 {
			tail = append(tail, max(s.endAt-last, 0))
		}
	}
	var perStep []int64
	for _, st := range res.streams {
		for i := range st.steps {
			next := &st.started
			if i+1 < len(st.steps) {
				next = &st.steps[i+1].began
			}
			call := &st.steps[i]
			emitting, ended, nextBegan := call.emitting.Load(), call.ended.Load(), next.Load()
			if ended > 0 && nextBegan > 0 {
				turnaround = append(turnaround, max(nextBegan-ended, 0))
			}
			if tool := call.toolNanos.Load(); emitting > 0 && nextBegan > 0 && tool >= 0 {
				perStep = append(perStep, max(nextBegan-emitting-tool, 0))
			}
		}
	}
	a.AddedPerAnswer, a.AddedPerStep, a.ToolTime, a.StepTurnaround = latencyOf(perAnswer), latencyOf(perStep), latencyOf(tools), latencyOf(turnaround)
	a.AskToFirstCall, a.LastTokenToEnd = latencyOf(first), latencyOf(tail)
	return a
}

func summarise(res *loadResult, plan loadPlan, server, dialect, scope string) *LoadReport {
	r := &LoadReport{
		Server: server, Dialect: dialect, Sessions: plan.Sessions, Subscribers: plan.Subscribers,
		TokenRate: plan.Script.Rate, Tokens: plan.Script.Tokens, TokenBytes: plan.Script.TokenSize,
		FirstTokenDelayMS: float64(plan.Script.FirstDelay) / 1e6,
		AskErrors:         res.askErrors, CPUScope: scope, Errors: res.errs,
	}
	if plan.Gap > 0 {
		r.ArrivalsPerSecond = round3(float64(time.Second) / float64(plan.Gap))
	}
	var ttft, inter, ask []int64
	for _, s := range res.subs {
		if s.ttft >= 0 {
			ttft = append(ttft, s.ttft)
			ask = append(ask, s.askToFirst)
		}
		inter = append(inter, s.inter...)
		lost, dup := s.lostAndDuplicated()
		r.Lost += lost
		r.Duplicated += dup
		r.TokensExpected += int64(len(s.counts))
		r.TokensDelivered += s.tokens
		r.Frames += s.frames
		r.DeltaFrames += s.deltaFrames
		r.Reordered += s.reordered
		r.IndexErrors += s.indexErrors
		switch s.ended {
		case "":
			r.Unended++
		case "ERROR", "CANCELLED":
			r.StreamErrors++
		}
	}
	r.AddedTTFT, r.InterToken, r.AskToFirstDelta = latencyOf(ttft), latencyOf(inter), latencyOf(ask)
	if plan.Script.AgentSteps > 0 {
		r.Agent = summariseAgent(res, plan.Script)
	}
	if window := time.Duration(res.lastFrame - res.firstAsk); window > 0 {
		r.DurationS = round3(window.Seconds())
		r.TokensPerSecond = math.Round(float64(r.TokensDelivered) / window.Seconds())
		r.FramesPerSecond = math.Round(float64(r.Frames) / window.Seconds())
	}
	if res.cpu.OK {
		r.CPUSeconds = round3(res.cpu.CPU.Seconds())
		if res.cpu.Wall > 0 {
			r.CPUCores = round3(res.cpu.CPU.Seconds() / res.cpu.Wall.Seconds())
		}
		r.RSSBytes, r.RSSPeak = res.cpu.RSS, res.cpu.RSSPeak
	} else {
		r.CPUScope = "not measured"
	}
	return r
}

// Ratios are tokencast's figures divided by the floor's.
type Ratios struct {
	AddedTTFTP50  float64 `json:"added_ttft_p50"`
	AddedTTFTP99  float64 `json:"added_ttft_p99"`
	InterTokenP50 float64 `json:"inter_token_p50"`
	InterTokenP99 float64 `json:"inter_token_p99"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	FramesPerS    float64 `json:"frames_per_s"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

func ratios(t, f *LoadReport) *Ratios {
	return &Ratios{
		AddedTTFTP50: ratio(t.AddedTTFT.P50, f.AddedTTFT.P50), AddedTTFTP99: ratio(t.AddedTTFT.P99, f.AddedTTFT.P99),
		InterTokenP50: ratio(t.InterToken.P50, f.InterToken.P50), InterTokenP99: ratio(t.InterToken.P99, f.InterToken.P99),
		CPUSeconds: ratio(t.CPUSeconds, f.CPUSeconds), FramesPerS: ratio(t.FramesPerSecond, f.FramesPerSecond),
	}
}

// Report is what `tokencast bench --json` prints: the tokencast run's figures
// at the top level, the floor's beside them when it ran.
type Report struct {
	Mode string `json:"mode"`
	*LoadReport
	Floor        *LoadReport `json:"floor,omitempty"`
	RatioToFloor *Ratios     `json:"ratio_to_floor,omitempty"`
	*IdleReport
}

func printLoad(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	t, f := rep.LoadReport, rep.Floor
	steps := ""
	if t.Agent != nil {
		steps = fmt.Sprintf("%d tool steps (a calculator call %.4g ms after each model call begins), then ", t.Agent.ToolSteps, t.FirstTokenDelayMS)
	}
	fmt.Fprintf(w, "tokencast bench: %d sessions × %d subscribers over %s, %.4g arrivals/s; answers of %s%d tokens × %d B at %.4g tokens/s after %.4g ms\n",
		t.Sessions, t.Subscribers, t.Dialect, t.ArrivalsPerSecond, steps, t.Tokens, t.TokenBytes, t.TokenRate, t.FirstTokenDelayMS)
	head := "\ttokencast"
	if f != nil {
		head += "\tfloor\tratio"
	}
	fmt.Fprintln(tw, "latency (ms)\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, l Latency) {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", name, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	row("added TTFT", t.AddedTTFT)
	row("inter-token", t.InterToken)
	row("ask → first DELTA", t.AskToFirstDelta)
	if a := t.Agent; a != nil {
		row("added per tool step", a.AddedPerStep)
		row("added per answer", a.AddedPerAnswer)
		row("step turnaround", a.StepTurnaround)
		row("ask → first model call", a.AskToFirstCall)
		row("last token → END", a.LastTokenToEnd)
		row("tools' durationMs per answer", a.ToolTime)
	}
	if f != nil {
		row("floor added TTFT", f.AddedTTFT)
		row("floor inter-token", f.InterToken)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t")
	fmt.Fprintln(tw, "totals"+head+"\t")
	num := func(name string, tv, fv float64, format string) {
		fmt.Fprintf(tw, "%s\t"+format+"\t", name, tv)
		if f != nil {
			fmt.Fprintf(tw, format+"\t%.2f\t", fv, ratio(tv, fv))
		}
		fmt.Fprintln(tw)
	}
	var fl LoadReport
	if f != nil {
		fl = *f
	}
	num("added TTFT p50 (ms)", t.AddedTTFT.P50, fl.AddedTTFT.P50, "%.3f")
	num("added TTFT p99 (ms)", t.AddedTTFT.P99, fl.AddedTTFT.P99, "%.3f")
	num("inter-token p50 (ms)", t.InterToken.P50, fl.InterToken.P50, "%.3f")
	num("inter-token p99 (ms)", t.InterToken.P99, fl.InterToken.P99, "%.3f")
	num("tokens/s delivered", t.TokensPerSecond, fl.TokensPerSecond, "%.0f")
	num("frames/s delivered", t.FramesPerSecond, fl.FramesPerSecond, "%.0f")
	num("tokens delivered", float64(t.TokensDelivered), float64(fl.TokensDelivered), "%.0f")
	num("lost", float64(t.Lost), float64(fl.Lost), "%.0f")
	num("duplicated", float64(t.Duplicated), float64(fl.Duplicated), "%.0f")
	num("CPU seconds", t.CPUSeconds, fl.CPUSeconds, "%.2f")
	num("CPU cores busy", t.CPUCores, fl.CPUCores, "%.2f")
	num("RSS (MiB)", float64(t.RSSBytes)/(1<<20), float64(fl.RSSBytes)/(1<<20), "%.1f")
	tw.Flush()
	fmt.Fprintf(w, "CPU and RSS: %s.\n", t.CPUScope)
	if a := t.Agent; a != nil {
		fmt.Fprintf(w, "Agent runs: added per tool step = its model call's %.4g ms delay over → the next model call began − the tool's durationMs.\n"+
			"Added per answer = END received − ask sent − the model's own %.4g ms (%d first-token delays and the token schedule) − the tools' durationMs.\n"+
			"Step turnaround: a tool step's model call returned → the next one began, the tool included. Tool results %d of %d (%d errors), STEP events %d of %d.\n",
			t.FirstTokenDelayMS, a.ModelTimeMS, a.ToolSteps+1, a.ToolResults, a.ToolResultsExpected, a.ToolErrors, a.StepEvents, a.StepEventsExpected)
	}
	problems := t.Reordered + t.IndexErrors + t.Unended + t.StreamErrors + t.AskErrors
	if problems > 0 {
		fmt.Fprintf(w, "PROBLEMS: reordered %d, index errors %d, subscribers without END %d, stream errors %d, ask errors %d\n",
			t.Reordered, t.IndexErrors, t.Unended, t.StreamErrors, t.AskErrors)
	}
	for _, e := range t.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}
