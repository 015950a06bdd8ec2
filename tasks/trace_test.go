package tasks

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The trace context goes into the task's headers and comes back out as the
// parent of the worker's span; deadline and max-retry headers stay.
// Not parallel: it sets the global propagator, as a program's Setup does.
func TestTraceContextTravelsWithTheTask(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), parent)

	plain, err := NewQuoteFetchTaskContext(ctx, "ibm")
	if err != nil {
		t.Fatal(err)
	}
	timed, err := NewQuoteFetchTaskWithDeadlineContext(ctx, "ibm", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for name, task := range map[string]interface {
		Headers() map[string]string
	}{"plain": plain, "deadline": timed} {
		h := task.Headers()
		if got := h["traceparent"]; got != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
			t.Errorf("%s: traceparent = %q", name, got)
		}
		if h[HeaderMaxRetry] == "" {
			t.Errorf("%s: %s header lost: %v", name, HeaderMaxRetry, h)
		}
	}
	if _, ok := Deadline(timed); !ok {
		t.Errorf("deadline header lost: %v", timed.Headers())
	}
	got := trace.SpanContextFromContext(TraceContext(context.Background(), plain))
	if !got.IsRemote() || got.TraceID() != tid || got.SpanID() != sid {
		t.Errorf("extracted %+v, want remote %s/%s", got, tid, sid)
	}

	// Without a span in ctx, or with a task that carries none, no context.
	bare, err := NewQuoteFetchTaskContext(context.Background(), "ibm")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bare.Headers()["traceparent"]; ok {
		t.Errorf("traceparent without a span: %v", bare.Headers())
	}
	if sc := trace.SpanContextFromContext(TraceContext(context.Background(), bare)); sc.IsValid() {
		t.Errorf("span context from a task without one: %+v", sc)
	}
}
