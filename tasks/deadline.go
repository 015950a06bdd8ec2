package tasks

import (
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// HeaderDeadline is the asynq task header that carries a quote fetch's
// deadline, in RFC 3339 with nanoseconds. A task still waiting when it
// passes is dropped, neither retried nor archived: a scheduled fetch whose
// successor is due has nothing left to say. Header names are wire format.
const HeaderDeadline = "tickerq-deadline"

// ErrStale is wrapped by the handler's error for a task whose deadline had
// passed before it ran. The error also matches asynq.RevokeTask, so asynq
// drops the task.
var ErrStale = errors.New("stale: deadline passed before the task ran")

// NewQuoteFetchTaskWithDeadline is NewQuoteFetchTask for a task that must
// not run at or after deadline (see HeaderDeadline). asynq's own Deadline
// option is not used for this: a task past it is retried and then archived
// by asynq, where this one is dropped.
func NewQuoteFetchTaskWithDeadline(symbol string, deadline time.Time, opts ...asynq.Option) (*asynq.Task, error) {
	headers, err := deadlineHeaders(deadline)
	if err != nil {
		return nil, err
	}
	return newQuoteFetchTask(symbol, headers, opts)
}

func deadlineHeaders(deadline time.Time) (map[string]string, error) {
	if deadline.IsZero() {
		return nil, fmt.Errorf("%w: zero deadline", ErrInvalidOption)
	}
	return map[string]string{HeaderDeadline: deadline.UTC().Format(time.RFC3339Nano)}, nil
}

// Deadline returns the deadline a task carries in HeaderDeadline, and
// whether it carries a readable one.
func Deadline(t *asynq.Task) (time.Time, bool) {
	v, ok := t.Headers()[HeaderDeadline]
	if !ok {
		return time.Time{}, false
	}
	d, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false
	}
	return d, true
}

// checkDeadline returns an error wrapping ErrStale and asynq.RevokeTask
// when t's deadline is at or before now. A task without a deadline, or with
// one that cannot be read, runs.
func checkDeadline(t *asynq.Task, now time.Time) error {
	d, ok := Deadline(t)
	if !ok || now.Before(d) {
		return nil
	}
	return staleError{deadline: d, late: now.Sub(d)}
}

// staleError matches ErrStale and asynq.RevokeTask.
type staleError struct {
	deadline time.Time
	late     time.Duration
}

func (e staleError) Error() string {
	return fmt.Sprintf("%v: deadline %s, %s ago", ErrStale, e.deadline.Format(time.RFC3339), e.late.Round(time.Millisecond))
}

func (e staleError) Unwrap() []error { return []error{ErrStale, asynq.RevokeTask} }
