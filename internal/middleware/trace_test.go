package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/tracing"
	"github.com/tickerq/tickerq/tasks"
)

func TestMain(m *testing.M) {
	// What tracing.Setup installs: tasks read and write the trace context
	// in their headers through the global propagator.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

// traceJob runs one job through Observe with a span recorder and a logger
// with tracing.Hook; it returns the job's span, the span context the
// handler saw and the job line.
func traceJob(t *testing.T, task *asynq.Task, handlerErr error) (sdktrace.ReadOnlySpan, trace.SpanContext, map[string]any) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var buf bytes.Buffer
	var seen trace.SpanContext
	h := Observe(zerolog.New(&buf).Hook(tracing.Hook{}), &recorder{}, nil, WithTracerProvider(tp))(
		asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
			seen = trace.SpanContextFromContext(ctx)
			return handlerErr
		}))
	_ = h.ProcessTask(context.Background(), task)
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("job line %q: %v", buf.String(), err)
	}
	return spans[0], seen, line
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestObserveJobSpanContinuesEnqueuersTrace(t *testing.T) {
	t.Parallel()
	enqTP := sdktrace.NewTracerProvider()
	defer func() { _ = enqTP.Shutdown(context.Background()) }()
	ctx, enq := enqTP.Tracer("test").Start(context.Background(), "enqueue quote:fetch")
	task, err := tasks.NewQuoteFetchTaskContext(ctx, "goog")
	enq.End()
	if err != nil {
		t.Fatal(err)
	}
	span, seen, line := traceJob(t, task, nil)

	if span.Name() != "process quote:fetch" || span.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span %q of kind %v, want process quote:fetch, consumer", span.Name(), span.SpanKind())
	}
	if p := span.Parent(); p.TraceID() != enq.SpanContext().TraceID() || p.SpanID() != enq.SpanContext().SpanID() || !p.IsRemote() {
		t.Errorf("job span's parent %v, want the enqueuer's remote span %v", p, enq.SpanContext())
	}
	if seen.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("the handler ran under span %v, want the job span %v", seen.SpanID(), span.SpanContext().SpanID())
	}
	a := attrs(span)
	for k, want := range map[attribute.Key]string{
		"messaging.system": "asynq", "messaging.operation.type": "process",
		AttrSymbol: "GOOG", AttrOutcome: OutcomeSuccess,
	} {
		if got := a[k].AsString(); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []attribute.Key{"messaging.destination.name", "messaging.message.id", AttrRetryCount} {
		if _, ok := a[k]; !ok {
			t.Errorf("span lacks attribute %s", k)
		}
	}
	if span.Status().Code != codes.Unset {
		t.Errorf("status %v for a success, want unset", span.Status())
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() || line["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("job line trace_id %v span_id %v, want the job span's %s %s", line["trace_id"], line["span_id"],
			span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
}

func TestObserveJobWithoutTraceContextStartsATrace(t *testing.T) {
	t.Parallel()
	task, err := tasks.NewQuoteFetchTask("goog")
	if err != nil {
		t.Fatal(err)
	}
	span, _, line := traceJob(t, task, tasks.ErrUnknownSymbol)
	if span.Parent().IsValid() {
		t.Errorf("job span has parent %v, want a root", span.Parent())
	}
	if got := attrs(span)[AttrOutcome].AsString(); got != OutcomeArchived {
		t.Errorf("outcome attribute %q, want %q", got, OutcomeArchived)
	}
	if span.Status().Code != codes.Error || span.Status().Description != OutcomeArchived {
		t.Errorf("status %+v, want Error %q (the outcome, not the error's text)", span.Status(), OutcomeArchived)
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() {
		t.Errorf("job line trace_id %v, want %s", line["trace_id"], span.SpanContext().TraceID())
	}
}

func TestObserveJobLineWithoutTracing(t *testing.T) {
	t.Parallel()
	// The global provider is OpenTelemetry's no-op one here: no span id,
	// and the line is the same as before tracing.
	var buf bytes.Buffer
	h := Observe(zerolog.New(&buf).Hook(tracing.Hook{}), &recorder{}, nil)(
		asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	task, err := tasks.NewQuoteFetchTask("goog")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("trace_id")) {
		t.Errorf("job line with tracing off has a trace_id: %s", buf.String())
	}
}
