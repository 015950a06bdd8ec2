package tasks

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
)

// Class is how a job's failure is handled. Classify is the one place that
// decides it; IsFailure and RetryDelay, plugged into asynq's server config,
// and the handler's use of asynq.SkipRetry follow from it.
type Class int

// Failure classes.
const (
	// Success: no error.
	Success Class = iota
	// Transient failures (5xx, timeouts, resets, database unavailable) are
	// retried with exponential backoff and count as failures.
	Transient
	// RateLimited failures (429, or no permit from the RateLimiter: a
	// ThrottledError) are retried after the server's Retry-After or the
	// limiter's delay and do not count as failures or use up a retry
	// (see HeaderMaxRetry). On asynq's last attempt of a task without
	// HeaderMaxRetry they are waited out instead (attemptWait).
	RateLimited
	// Permanent failures (unknown symbol, invalid quote, other 4xx, data the
	// database rejects, bad payload, ErrRetriesExhausted) are archived at
	// once.
	Permanent
	// Stale jobs (their deadline passed before they ran, see ErrStale) are
	// dropped: neither retried nor archived.
	Stale
)

func (c Class) String() string {
	switch c {
	case Success:
		return "success"
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case Permanent:
		return "permanent"
	case Stale:
		return "stale"
	}
	return "unknown"
}

// errBadPayload marks a payload that can never be processed.
var errBadPayload = errors.New("bad payload")

// Classify decides the class of a handler error.
func Classify(err error) Class {
	var status *StatusError
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrStale):
		return Stale
	case errors.Is(err, asynq.SkipRetry),
		errors.Is(err, errBadPayload),
		errors.Is(err, ErrRetriesExhausted),
		errors.Is(err, ErrInvalidSymbol),
		errors.Is(err, ErrUnknownSymbol),
		errors.Is(err, ErrInvalidQuote),
		errors.Is(err, ErrRejected):
		return Permanent
	case errors.As(err, new(*ThrottledError)):
		return RateLimited
	case errors.As(err, &status):
		switch {
		case status.Code == http.StatusTooManyRequests:
			return RateLimited
		case status.Code >= 400 && status.Code < 500:
			return Permanent
		}
	}
	return Transient
}

// Retry policy.
const (
	// DefaultRateLimitDelay is used when a 429 carries no usable Retry-After.
	DefaultRateLimitDelay = time.Second
	backoffBase           = time.Second
	backoffMax            = 10 * time.Minute
)

// IsFailure is asynq's Config.IsFailure: rate limiting is not a failure.
func IsFailure(err error) bool { return Classify(err) != RateLimited }

// RetryDelay is asynq's Config.RetryDelayFunc: a rate-limited job waits what
// the server asked for; any other one backs off exponentially from 1 s
// (doubling per retry, capped at 10 min) with up to 20% jitter. A failure
// that asynq counts past the HeaderMaxRetry of t (a timeout or an expired
// lease on its last allowed attempt) comes back at once: that attempt only
// archives it.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if Classify(err) == RateLimited {
		return rateLimitDelay(err)
	}
	if limit, ok := headerMaxRetry(t); ok && n >= limit {
		return 0
	}
	d := backoffMax
	if n < 20 {
		d = min(backoffBase<<n, backoffMax)
	}
	return d + rand.N(d/5+1)
}

// rateLimitDelay is how long a rate-limited job waits: what the upstream's
// Retry-After or the RateLimiter said, else DefaultRateLimitDelay.
func rateLimitDelay(err error) time.Duration {
	var status *StatusError
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled) && throttled.RetryAfter > 0:
		return throttled.RetryAfter
	case errors.As(err, &status) && status.RetryAfter > 0:
		return status.RetryAfter
	}
	return DefaultRateLimitDelay
}

// upstreamPause reports a 429 whose Retry-After asks every worker to pause.
func upstreamPause(err error) (time.Duration, bool) {
	var status *StatusError
	if errors.As(err, &status) && status.Code == http.StatusTooManyRequests && status.RetryAfter > 0 {
		return status.RetryAfter, true
	}
	return 0, false
}

// MaxSlotWait bounds how long a job waits in its worker slot for a quote
// permit or the end of an upstream pause; further away, it goes back to
// asynq (a ThrottledError) and frees the slot. Two seconds, not one: put-back
// jobs come back up to two seconds late (asynq keeps retry times in whole
// seconds and moves them every second), and a longer queue in the slots
// keeps permits from going unused meanwhile (three workers at 50/s drained
// 1 000 jobs in 1.03-1.07 x the ideal time, against 1.12-1.19 x).
const MaxSlotWait = 2 * time.Second

// lastAttemptReserve is what the last attempt keeps of its deadline for the
// request and the write after waiting.
const lastAttemptReserve = 5 * time.Second

// attemptWait says how long this attempt may wait in its slot for a permit,
// and whether it is the last attempt asynq allows. An attempt that is not
// the last waits at most MaxSlotWait, and at most half the time it has left,
// so that waiting for a permit does not become a timeout (a failure).
//
// Only a task without HeaderMaxRetry meets asynq's last attempt here (one
// with it has a spare retry that a rate limit never uses; see
// HeaderMaxRetry). asynq archives a task that fails on its last attempt
// before it asks IsFailure (processor.handleFailedMessage checks Retried >=
// MaxRetry first), whatever the error, and waiting for the upstream must
// never archive a task. So that attempt does not return a rate-limited error
// while its deadline allows: it waits for the permit or the pause in its
// slot, up to its deadline less a reserve, and sends the request again.
func attemptWait(ctx context.Context) (maxWait time.Duration, last bool) {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	deadline, ok3 := ctx.Deadline()
	if !ok3 {
		return MaxSlotWait, false
	}
	left := time.Until(deadline)
	if !ok1 || !ok2 || retried < maxRetry {
		return min(MaxSlotWait, left/2), false
	}
	return max(MaxSlotWait, left-min(lastAttemptReserve, left/2)), true
}

// finish maps a handler error to what asynq must see: permanent failures
// carry asynq.SkipRetry so they are archived at once.
func finish(err error) error {
	if Classify(err) == Permanent && !errors.Is(err, asynq.SkipRetry) {
		return permanentError{err}
	}
	return err
}

// permanentError matches asynq.SkipRetry without adding its wording to the
// message, which asynq stores as the task's last error for people to read.
type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() []error { return []error{e.err, asynq.SkipRetry} }
