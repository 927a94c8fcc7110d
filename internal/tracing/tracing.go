// Package tracing exports OpenTelemetry traces over OTLP/HTTP when the
// operator sets the standard OTEL_* variables, and costs nothing otherwise.
package tracing

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Span attributes tokencast records. Message text is never one of them.
const (
	Session    = attribute.Key("tokencast.session")
	Request    = attribute.Key("tokencast.request")
	Model      = attribute.Key("tokencast.model")
	Attempt    = attribute.Key("tokencast.attempt")
	Outcome    = attribute.Key("tokencast.outcome")
	ErrorCode  = attribute.Key("tokencast.error_code")
	TTFTMillis = attribute.Key("tokencast.ttft_ms")
	// OutputTokens is the OpenTelemetry GenAI convention's name.
	OutputTokens = attribute.Key("gen_ai.usage.output_tokens")
)

// TracerName names the tracer every part of tokencast starts spans with.
const TracerName = "tokencast"

// DefaultServiceName names the service when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "tokencast"

// Setup starts exporting traces if OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_SDK_DISABLED is not
// true): it installs a batching OTLP/HTTP tracer provider and the W3C
// tracecontext propagator as the globals. Otherwise the globals stay no-ops.
// shutdown flushes what is left and turns tracing off again.
//
// Variables are read through getenv, not the process environment, so a test
// can run a server with its own; the exporter still reads its other
// OTEL_EXPORTER_OTLP_* settings (headers, certificates) from the process.
func Setup(ctx context.Context, getenv func(string) string, serviceVersion string) (shutdown func(context.Context) error, err error) {
	nothing := func(context.Context) error { return nil }
	if getenv == nil {
		return nothing, nil
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nothing, nil
	}
	endpoint, ok := endpointURL(getenv)
	if !ok {
		return nothing, nil
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %s: %w", endpoint, err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = DefaultServiceName
	}
	var batch []sdktrace.BatchSpanProcessorOption
	if ms, err := strconv.Atoi(getenv("OTEL_BSP_SCHEDULE_DELAY")); err == nil && ms > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(time.Duration(ms)*time.Millisecond))
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter, batch...),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", name),
			attribute.String("service.version", serviceVersion),
		)),
	)
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return func(ctx context.Context) error {
		// Later spans go nowhere rather than to a provider that is gone.
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		return provider.Shutdown(ctx) // flushes the batch first
	}, nil
}

// endpointURL is where traces go: the traces endpoint as given, or the
// general endpoint with the signal's path, as the OTLP specification says.
func endpointURL(getenv func(string) string) (string, bool) {
	if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); u != "" {
		return u, true
	}
	if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); u != "" {
		return strings.TrimSuffix(u, "/") + "/v1/traces", true
	}
	return "", false
}
