package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
)

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
		ok   bool
	}{
		{"unset", nil, "", false},
		{"general endpoint gets the traces path", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces", true},
		{"traces endpoint is taken as given", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/custom"}, "https://c/custom", true},
		{"traces endpoint wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/t"}, "http://b/t", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := endpointURL(func(k string) string { return tt.env[k] })
			if got != tt.want || ok != tt.ok {
				t.Fatalf("endpointURL = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDisabledLeavesTheGlobalsAlone(t *testing.T) {
	before := otel.GetTracerProvider()
	for _, env := range []map[string]string{
		nil,
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
	} {
		shutdown, err := Setup(context.Background(), func(k string) string { return env[k] }, "test")
		if err != nil {
			t.Fatal(err)
		}
		if otel.GetTracerProvider() != before {
			t.Fatalf("env %v installed a tracer provider", env)
		}
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
