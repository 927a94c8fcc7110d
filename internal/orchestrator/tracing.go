package orchestrator

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/tracing"
)

// startAnswerSpan opens the worker's span of an answer as a child of the
// ask that queued it, which may have run in another process. The tracer is
// the global one, a no-op unless tracing was set up.
func startAnswerSpan(ctx context.Context, req chat.Request) (context.Context, trace.Span) {
	if req.TraceParent != "" {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{"traceparent": req.TraceParent})
	}
	return otel.Tracer(tracing.TracerName).Start(ctx, "answer",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(tracing.Session.String(req.SessionID), tracing.Request.String(req.ID)))
}

// traceOutcome records on the answer's span how the answer ended.
func (a *answer) traceOutcome(outcome chat.EventType, code string, usage chat.Usage) {
	if a.span == nil || !a.span.IsRecording() {
		return
	}
	a.span.SetAttributes(
		tracing.Attempt.Int64(int64(a.attempt)),
		tracing.Model.String(a.model),
		tracing.Outcome.String(string(outcome)),
		tracing.OutputTokens.Int(usage.OutputTokens),
	)
	if a.emitted {
		a.span.SetAttributes(tracing.TTFTMillis.Int64(a.ttft.Milliseconds()))
	}
	if code != "" {
		a.span.SetAttributes(tracing.ErrorCode.String(code))
	}
	if outcome == chat.EventError {
		a.span.SetStatus(codes.Error, code)
	}
}

// startProviderSpan opens the span of one provider call.
func startProviderSpan(ctx context.Context, m Model) (context.Context, trace.Span) {
	return otel.Tracer(tracing.TracerName).Start(ctx, "provider.stream",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.Model.String(m.Ref)))
}

// endProviderSpan closes a provider call's span with its error's stable
// code; the provider's own text stays out of the trace.
func endProviderSpan(span trace.Span, err error) {
	if err != nil {
		code := chat.ErrorCode(err)
		if code == chat.CodeInternal {
			code = chat.CodeProvider // a failure the provider did not classify is its own
		}
		span.SetAttributes(tracing.ErrorCode.String(code))
		span.SetStatus(codes.Error, code)
	}
	span.End()
}
