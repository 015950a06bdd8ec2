package tasks

import (
	"context"
	"maps"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// NewQuoteFetchTaskContext is NewQuoteFetchTask with the trace context of
// ctx in the task's headers (W3C traceparent and tracestate, written by
// OpenTelemetry's global propagator), so that the worker's job span
// continues the enqueuer's trace. With tracing off the global propagator
// writes nothing and the task is the same as NewQuoteFetchTask's.
func NewQuoteFetchTaskContext(ctx context.Context, symbol string, opts ...asynq.Option) (*asynq.Task, error) {
	return newQuoteFetchTask(symbol, traceHeaders(ctx, nil), opts)
}

// NewQuoteFetchTaskWithDeadlineContext is NewQuoteFetchTaskWithDeadline
// with the trace context of ctx in the task's headers, as in
// NewQuoteFetchTaskContext.
func NewQuoteFetchTaskWithDeadlineContext(ctx context.Context, symbol string, deadline time.Time, opts ...asynq.Option) (*asynq.Task, error) {
	headers, err := deadlineHeaders(deadline)
	if err != nil {
		return nil, err
	}
	return newQuoteFetchTask(symbol, traceHeaders(ctx, headers), opts)
}

// TraceContext returns ctx carrying the remote span context that t's
// headers hold, if any: a span started from it is a child of the
// enqueuer's span. Without such headers (or with tracing off) ctx is
// returned as it is, and a span started from it begins a new trace.
func TraceContext(ctx context.Context, t *asynq.Task) context.Context {
	h := t.Headers()
	if len(h) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(h))
}

func traceHeaders(ctx context.Context, h map[string]string) map[string]string {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	if len(carrier) == 0 {
		return h
	}
	if h == nil {
		h = make(map[string]string, len(carrier))
	}
	maps.Copy(h, carrier)
	return h
}
