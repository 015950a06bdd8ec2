package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// HeaderMaxRetry is the asynq task header that carries how many retries the
// caller allowed a quote fetch, in decimal (the default DefaultMaxRetry, or
// the caller's asynq.MaxRetry option). Header names are wire format.
//
// Waiting for the upstream must never archive a task, but asynq archives a
// task that fails once its retries are used up before it asks IsFailure
// (processor.handleFailedMessage checks Retried >= MaxRetry first), whatever
// the error, a 429 included. So NewQuoteFetchTask gives asynq one retry more
// than the caller asked for, asynq.MaxRetry(n+1), and the handler enforces n
// itself:
//
//   - a counted failure after n retries is archived at once (asynq.SkipRetry,
//     "retries exhausted"); with n = 0, the first one;
//   - a rate-limited attempt is never counted (IsFailure), so Retried stays
//     at most n, under asynq's n+1, and asynq never archives it;
//   - an attempt that starts after more than n retries, because asynq
//     counted a failure the handler never returned (a timeout or an expired
//     lease on the last attempt), is archived before it sends a request.
//
// asynq's own views of the task (producer tasks list, asynqmon, the
// Inspector) therefore show MaxRetry n+1; the worker's job line shows n.
// A task without this header (built with asynq.NewTask by another program)
// keeps asynq's limit, and its last attempt waits rate limits out in its
// worker slot (see attemptWait).
const HeaderMaxRetry = "tickerq-max-retry"

// MaxRetry returns how many retries the caller allowed task t, which runs
// under ctx: its HeaderMaxRetry, else asynq's MaxRetry for the task (0 when
// ctx is not an asynq task's).
func MaxRetry(ctx context.Context, t *asynq.Task) int {
	if n, ok := headerMaxRetry(t); ok {
		return n
	}
	n, _ := asynq.GetMaxRetry(ctx)
	return n
}

// AllowedRetries is MaxRetry for a task seen from outside a handler, e.g.
// through asynq's Inspector: the HeaderMaxRetry in headers, else asynqMax,
// asynq's own MaxRetry of the task.
func AllowedRetries(headers map[string]string, asynqMax int) int {
	if n, ok := parseMaxRetry(headers); ok {
		return n
	}
	return asynqMax
}

// headerMaxRetry returns the HeaderMaxRetry of t, and whether it carries a
// readable one.
func headerMaxRetry(t *asynq.Task) (int, bool) {
	if t == nil {
		return 0, false
	}
	return parseMaxRetry(t.Headers())
}

// parseMaxRetry reads HeaderMaxRetry from headers.
func parseMaxRetry(headers map[string]string) (int, bool) {
	v, ok := headers[HeaderMaxRetry]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// maxRetryHeaders returns a copy of headers plus HeaderMaxRetry for n, and
// the option that gives asynq one retry more than n.
func maxRetryHeaders(headers map[string]string, n int) (map[string]string, asynq.Option) {
	all := make(map[string]string, len(headers)+1)
	for k, v := range headers {
		all[k] = v
	}
	all[HeaderMaxRetry] = strconv.Itoa(n)
	return all, asynq.MaxRetry(n + 1)
}

// lastAttemptMargin is how much sooner than asynq's deadline the last
// allowed attempt gives up, at most: its own error (archived, retries
// exhausted) must reach asynq before asynq's timeout does, which asynq would
// count as one more failure and retry.
const lastAttemptMargin = 500 * time.Millisecond

// limitAttempt applies the caller's retry limit n to the attempt that ctx
// runs, retried retries into the task. It returns the context the attempt
// runs under, and a non-nil error when the attempt must not run at all.
func limitAttempt(ctx context.Context, n, retried int) (context.Context, context.CancelFunc, error) {
	if retried > n {
		return ctx, func() {}, exhaustedError{n: n, err: fmt.Errorf("attempt after %d retries: the previous attempt timed out or lost its lease", retried)}
	}
	deadline, ok := ctx.Deadline()
	if retried < n || !ok {
		return ctx, func() {}, nil
	}
	margin := min(lastAttemptMargin, time.Until(deadline)/4)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-margin))
	return ctx, cancel, nil
}

// ErrRetriesExhausted is wrapped by the handler's error for a quote fetch
// archived because the retries its HeaderMaxRetry allows are used up.
var ErrRetriesExhausted = errors.New("retries exhausted")

// exhaustedError is a counted failure once the caller's retries are used
// up. It matches ErrRetriesExhausted and asynq.SkipRetry, so asynq archives
// the task, without adding asynq's wording to the message people read.
type exhaustedError struct {
	n   int
	err error
}

func (e exhaustedError) Error() string {
	return fmt.Sprintf("%v (%d allowed): %v", ErrRetriesExhausted, e.n, e.err)
}

func (e exhaustedError) Unwrap() []error {
	return []error{ErrRetriesExhausted, e.err, asynq.SkipRetry}
}
