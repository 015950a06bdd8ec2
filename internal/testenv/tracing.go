package testenv

import (
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// GlobalSpanRecorder installs, as OpenTelemetry's global tracer provider
// and propagator, a provider that records every span and the W3C
// propagator, as tracing.Setup does, and puts the no-op ones back when the
// test ends. The globals are shared, so callers must not be parallel tests
// (parallel ones run only after every sequential one has returned).
func GlobalSpanRecorder(tb testing.TB) *tracetest.SpanRecorder {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tb.Cleanup(func() {
		_ = tp.Shutdown(tb.Context())
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	return rec
}
