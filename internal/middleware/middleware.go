// Package middleware holds the worker's asynq middleware.
package middleware

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/tracing"
	"github.com/tickerq/tickerq/tasks"
)

// Attributes of the job span besides OpenTelemetry's messaging ones.
const (
	AttrRetryCount = attribute.Key("tickerq.retry_count")
	AttrSymbol     = attribute.Key("tickerq.symbol")
	AttrOutcome    = attribute.Key("tickerq.outcome")
)

// Option configures Observe.
type Option func(*options)

type options struct {
	tracer trace.Tracer
}

// WithTracerProvider makes the job spans with tp instead of the global
// provider (tests use a recorder).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp.Tracer(tracing.Name) }
}

// JobObserver records finished jobs (package metrics implements it).
type JobObserver interface {
	ObserveJob(taskType, outcome string, d time.Duration)
}

// Job outcomes, as logged and counted.
const (
	OutcomeSuccess     = "success"
	OutcomeRetry       = "retry"
	OutcomeRateLimited = "rate_limited"
	OutcomeArchived    = "archived"
	// OutcomeStale: the job's deadline had passed; asynq drops it.
	OutcomeStale = "stale"
)

// Observe logs each job attempt once, when it ends, with its task id, type,
// symbol, queue, retry count, the retries its caller allowed (max_retry, see
// tasks.MaxRetry), outcome and duration_ms, and records it with
// obs. Each attempt is a span, "process <type>" of kind Consumer, the child
// of the enqueuer's span whose context the task's headers carry (a new
// trace without them), with the messaging attributes, the retry count, the
// symbol and the outcome; its status is Error when the attempt failed
// (retry, archived). The job line is logged with the span's context, so a
// logger with tracing.Hook adds trace_id and span_id. With reported not nil, it records there each task whose end (archived
// or stale) its line has logged, so that the asynq logger adapter leaves out
// asynq's warning saying the same (see logging.Reported).
func Observe(log zerolog.Logger, obs JobObserver, reported *logging.Reported, opts ...Option) asynq.MiddlewareFunc {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tracer := o.tracer
	if tracer == nil {
		// The global provider's tracer forwards to whatever tracing.Setup
		// installs, even later; taken once, not per job.
		tracer = tracing.Tracer()
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			ctx, span := tracer.Start(tasks.TraceContext(ctx, t), spanName(t.Type()), trace.WithSpanKind(trace.SpanKindConsumer))
			defer span.End()
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			d := time.Since(start)

			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			asynqMaxRetry, _ := asynq.GetMaxRetry(ctx)
			outcome := Outcome(err, retried, asynqMaxRetry)
			maxRetry := tasks.MaxRetry(ctx, t) // the caller's, see tasks.HeaderMaxRetry
			obs.ObserveJob(t.Type(), outcome, d)
			sym := tasks.Symbol(t)
			if span.IsRecording() { // no attribute work when tracing is off
				span.SetAttributes(
					semconv.MessagingSystemKey.String("asynq"),
					semconv.MessagingOperationTypeProcess,
					semconv.MessagingDestinationName(queue),
					semconv.MessagingMessageID(id),
					AttrRetryCount.Int(retried),
					AttrSymbol.String(sym),
					AttrOutcome.String(outcome),
				)
				if outcome == OutcomeRetry || outcome == OutcomeArchived {
					// The outcome, not the error's text: upstream text may
					// hold a price. The job line, joined by trace_id, has it.
					span.SetStatus(codes.Error, outcome)
				}
			}

			ev := log.Info()
			switch outcome {
			case OutcomeRetry, OutcomeRateLimited, OutcomeStale:
				ev = log.Warn()
			case OutcomeArchived:
				ev = log.Error()
			}
			ev = ev.Str("task_id", id).Str("type", t.Type()).Str("queue", queue).
				Int("retried", retried).Int("max_retry", maxRetry).
				Str("outcome", outcome).Dur("duration_ms", d).Ctx(ctx)
			if sym != "" {
				ev = ev.Str("symbol", sym)
			}
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("job")
			if reported != nil && (outcome == OutcomeArchived || outcome == OutcomeStale) {
				reported.Add(id)
			}
			return err
		})
	}
}

// spanName is the job span's name, "process <type>" as OpenTelemetry's
// messaging conventions have it; the quote-fetch one without an allocation.
func spanName(taskType string) string {
	if taskType == tasks.TypeQuoteFetch {
		return "process " + tasks.TypeQuoteFetch
	}
	return "process " + taskType
}

// Outcome says what asynq will do with a job that returned err after
// retried retries, asynqMaxRetry being asynq's MaxRetry for the task (one
// more than its caller allowed for a task with tasks.HeaderMaxRetry, whose
// handler archives it itself with asynq.SkipRetry once the caller's retries
// are used up).
func Outcome(err error, retried, asynqMaxRetry int) string {
	switch tasks.Classify(err) {
	case tasks.Success:
		return OutcomeSuccess
	case tasks.RateLimited:
		// asynq archives a task that fails on its last attempt whatever the
		// error. A task with tasks.HeaderMaxRetry never gets there with a
		// rate limit; for one without, the handler waits rate limits out on
		// that attempt, so this is only reached when the attempt's deadline
		// left no room to wait.
		if retried >= asynqMaxRetry {
			return OutcomeArchived
		}
		return OutcomeRateLimited
	case tasks.Permanent:
		return OutcomeArchived
	case tasks.Stale:
		return OutcomeStale
	}
	if retried >= asynqMaxRetry {
		return OutcomeArchived
	}
	return OutcomeRetry
}
