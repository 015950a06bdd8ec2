package tasks_test

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/tasks"
)

// A program that traces puts its span's context into the task, so the
// worker's job span continues that trace. (A real program installs an SDK
// tracer provider; here a fixed span context stands in for its span.)
func ExampleNewQuoteFetchTaskContext() {
	otel.SetTextMapPropagator(propagation.TraceContext{}) // tracing.Setup does this
	defer otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	task, err := tasks.NewQuoteFetchTaskContext(ctx, "goog")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Headers()["traceparent"])
	// In the worker, tasks.TraceContext(ctx, task) gives the parent back.
	parent := trace.SpanContextFromContext(tasks.TraceContext(context.Background(), task))
	fmt.Println(parent.TraceID(), parent.IsRemote())
	// Output:
	// 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	// 4bf92f3577b34da6a3ce929d0e0e4736 true
}
