// Package middleware holds the worker's asynq middleware.
package middleware

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/tasks"
)

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
// obs. With reported not nil, it records there each task whose end (archived
// or stale) its line has logged, so that the asynq logger adapter leaves out
// asynq's warning saying the same (see logging.Reported).
func Observe(log zerolog.Logger, obs JobObserver, reported *logging.Reported) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
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

			ev := log.Info()
			switch outcome {
			case OutcomeRetry, OutcomeRateLimited, OutcomeStale:
				ev = log.Warn()
			case OutcomeArchived:
				ev = log.Error()
			}
			ev = ev.Str("task_id", id).Str("type", t.Type()).Str("queue", queue).
				Int("retried", retried).Int("max_retry", maxRetry).
				Str("outcome", outcome).Dur("duration_ms", d)
			if sym := tasks.Symbol(t); sym != "" {
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
