package graph

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/graph/model"
	"github.com/tokencast/tokencast/internal/tracing"
)

// startAsk opens the span an answer's trace starts with. The tracer is the
// global one, a no-op unless tracing was set up.
func startAsk(ctx context.Context, session string) (context.Context, trace.Span) {
	return otel.Tracer(tracing.TracerName).Start(ctx, "ask",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.Session.String(session)))
}

// endAsk closes the ask span with the request it accepted or the code it
// refused with.
func endAsk(span trace.Span, resp *model.GetLlmResponse, err error) {
	if resp != nil && resp.RequestID != nil {
		span.SetAttributes(tracing.Request.String(*resp.RequestID))
	}
	if err != nil {
		code := chat.ErrorCode(err)
		span.SetAttributes(tracing.ErrorCode.String(code))
		span.SetStatus(codes.Error, code)
	}
	span.End()
}

// traceParent is the W3C trace context of ctx, carried with a request to the
// worker; empty when tracing is off.
func traceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	return carrier["traceparent"]
}
