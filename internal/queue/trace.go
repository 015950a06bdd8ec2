package queue

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/tracing"
	"github.com/tickerq/tickerq/tasks"
)

// EnqueueSpanName is the name of the span of one task's enqueue, the root
// of that task's trace; the worker's job span is its child.
const EnqueueSpanName = "enqueue " + tasks.TypeQuoteFetch

// Attribute keys of tickerq's own enqueue span attributes.
const (
	AttrSymbol  = attribute.Key("tickerq.symbol")
	AttrOutcome = attribute.Key("tickerq.outcome")
)

// StartEnqueueSpan starts the span of enqueueing one task for symbol to
// queue, as a new root: each task is its own trace, whatever span ctx
// holds. Build the task with tasks.NewQuoteFetchTaskContext(ctx, ...) from
// the returned ctx so that the worker continues the trace, and end the
// span with EndEnqueueSpan. With tracing off it is OpenTelemetry's no-op
// span and no attribute is built.
func StartEnqueueSpan(ctx context.Context, queue, symbol string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := tracing.Tracer().Start(ctx, EnqueueSpanName, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String("asynq"),
			semconv.MessagingDestinationName(queue),
			AttrSymbol.String(symbol),
		)
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// EndEnqueueSpan ends span with the task's id (if known), the outcome word
// (enqueued, already_enqueued, skipped, failed or unknown) and, for a task
// that failed or may have, an error status.
func EndEnqueueSpan(span trace.Span, id, outcome string, err error) {
	if span.IsRecording() {
		if id != "" {
			span.SetAttributes(semconv.MessagingMessageID(id))
		}
		span.SetAttributes(AttrOutcome.String(outcome))
		if err != nil && (outcome == "failed" || outcome == "unknown") {
			span.RecordError(err)
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// spanOutcome is o's word in the enqueue span.
func spanOutcome(o EnqueueOutcome) string {
	switch o {
	case Enqueued:
		return "enqueued"
	case AlreadyEnqueued:
		return "already_enqueued"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}
