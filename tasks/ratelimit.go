package tasks

import (
	"context"
	"fmt"
	"time"
)

// RateLimiter paces the requests that jobs send to the quote API, across
// every worker that shares it (the worker's is Redis-backed, package
// internal/ratelimit). A handler without one sends at once.
type RateLimiter interface {
	// Wait returns nil once the job may send one request. It waits at most
	// maxWait: when the permit, or the end of an upstream pause, is further
	// away, it returns a *ThrottledError saying when to come back, so that
	// the job gives its worker slot back. Other errors are the context's.
	Wait(ctx context.Context, maxWait time.Duration) error
	// Pause tells every worker sharing the limiter that the upstream asked
	// for no requests during d (a 429 with Retry-After). It is best effort:
	// a failure to tell the other workers is logged, not returned.
	Pause(ctx context.Context, d time.Duration)
}

// ThrottledError is what a RateLimiter returns when a job should not wait in
// its slot for its turn. It is rate limited (see Classify): the job is retried
// after RetryAfter, and it is not a failure.
type ThrottledError struct {
	// RetryAfter is when the permit, or the end of the pause, is expected.
	RetryAfter time.Duration
	// Paused is true when the upstream asked every worker to pause.
	Paused bool
}

func (e *ThrottledError) Error() string {
	if e.Paused {
		return fmt.Sprintf("quote api paused by its rate limit: retry in %s", e.RetryAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("quote rate limit: no permit for %s", e.RetryAfter.Round(time.Millisecond))
}

// HandlerOption configures a QuoteFetchHandler.
type HandlerOption func(*QuoteFetchHandler)

// WithRateLimiter makes the handler take a permit from l before each quote
// request and report the upstream's 429s with Retry-After to it.
func WithRateLimiter(l RateLimiter) HandlerOption {
	return func(h *QuoteFetchHandler) { h.limiter = l }
}

// noLimit is the RateLimiter of a handler given none.
type noLimit struct{}

func (noLimit) Wait(ctx context.Context, _ time.Duration) error { return ctx.Err() }
func (noLimit) Pause(context.Context, time.Duration)            {}

// fetch takes a permit and fetches the quote of symbol. A rate-limited
// answer on the task's last allowed attempt is waited out in the slot and
// the request sent again (see attemptWait); on other attempts it is returned,
// and asynq retries the job after the upstream's delay.
func (h *QuoteFetchHandler) fetch(ctx context.Context, symbol string) (Quote, error) {
	for {
		maxWait, last := attemptWait(ctx)
		if err := h.limiter.Wait(ctx, maxWait); err != nil {
			return Quote{}, fmt.Errorf("wait for a quote permit: %w", err)
		}
		q, err := h.quotes.Quote(ctx, symbol)
		if d, ok := upstreamPause(err); ok {
			h.limiter.Pause(ctx, d)
		}
		if !last || Classify(err) != RateLimited {
			return q, err
		}
		select {
		case <-time.After(rateLimitDelay(err)):
		case <-ctx.Done():
			return q, err
		}
	}
}
