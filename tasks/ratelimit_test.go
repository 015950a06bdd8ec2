package tasks_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/tasks"
)

// TestThrottledIsRateLimited: a job the RateLimiter sends back is rate
// limited, not a failure, and comes back when the limiter said.
func TestThrottledIsRateLimited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err       error
		wantDelay time.Duration
	}{
		{&tasks.ThrottledError{RetryAfter: 2500 * time.Millisecond}, 2500 * time.Millisecond},
		{fmt.Errorf("wait for a quote permit: %w", &tasks.ThrottledError{RetryAfter: 5 * time.Second, Paused: true}), 5 * time.Second},
		{&tasks.ThrottledError{}, tasks.DefaultRateLimitDelay},
	} {
		if c := tasks.Classify(tc.err); c != tasks.RateLimited {
			t.Errorf("Classify(%v) = %v, want rate_limited", tc.err, c)
		}
		if tasks.IsFailure(tc.err) {
			t.Errorf("IsFailure(%v) = true", tc.err)
		}
		if d := tasks.RetryDelay(3, tc.err, nil); d != tc.wantDelay {
			t.Errorf("RetryDelay(%v) = %s, want %s", tc.err, d, tc.wantDelay)
		}
	}
}

// TestLastAttemptWaitsOutRateLimit: with MaxRetry 1, a 500 uses up the one
// retry, so the 429 that follows comes on the last allowed attempt, where
// asynq archives whatever the error (it checks Retried >= MaxRetry before
// IsFailure). Waiting for the upstream must not archive the task: the
// handler waits out the Retry-After in its slot and asks again.
func TestLastAttemptWaitsOutRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "LAST.A", "last_attempt"
	api := newFakeAPI(t, symbol, sequence(
		body(500, "boom"), rateLimited(func() string { return "1" }), ok(quoteJSON("10.5"))))
	e.startWorker(t, api.URL, queue, workerForward)
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(1))

	e.checkStored(t, e.waitFinished(t, queue, enq.ID), symbol, "10.5")
	if n := api.calls.Load(); n != 3 {
		t.Errorf("quote API asked %d times, want 3 (500, 429, 200)", n)
	}
	if failed, total := e.queueFailures(t, queue); failed != 1 || total != 1 {
		t.Errorf("failed counters %d/%d, want 1: the 500 only", failed, total)
	}
}
