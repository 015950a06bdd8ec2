// Package startup retries a program's first connections to the services it
// needs, so that a worker started together with Redis and Postgres (by an
// orchestrator, or docker compose) waits for them instead of crash-looping.
package startup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/config"
)

// Backoff bounds: the first retry comes after about BaseDelay, each next one
// after twice as long, never more than MaxDelay, each with up to 25% jitter
// so that many workers started at once do not knock together.
const (
	BaseDelay = 250 * time.Millisecond
	MaxDelay  = 5 * time.Second
)

// ErrGaveUp is wrapped by the error of a Connect that ran out of time.
var ErrGaveUp = errors.New("gave up")

// permanentError marks an error that no retry can cure.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that Connect returns it at once, without retrying:
// for a bad URL or an unsafe role, which waiting does not change.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// Options configure Connect.
type Options struct {
	// Name is the service, as logs and the state say it: "postgres".
	Name string
	// Deadline ends the retries; a zero or past one tries once. A program
	// that connects to several services in turn gives them one budget by
	// passing the same deadline to each.
	Deadline time.Time
	// Redactor hides secrets (the services' URL passwords) in logged and
	// returned errors; nil hides nothing.
	Redactor *config.Redactor
	// Log gets one line per failed attempt.
	Log zerolog.Logger
	// OnAttempt, if set, is told of each attempt before it runs (1, 2, …).
	OnAttempt func(name string, attempt int)
	// Delay is the wait before retry n (1, 2, …); Backoff if nil.
	Delay func(n int) time.Duration
}

// Connect calls fn until it succeeds, fn returns a Permanent error, ctx ends
// or opt.Deadline has passed. Each failure is logged
// with the attempt number, the next delay and the error, secrets redacted.
// When ctx ends while waiting it returns ctx's error (the caller exits 0 on
// a signal); when time runs out, an error wrapping ErrGaveUp and the last
// failure.
func Connect(ctx context.Context, opt Options, fn func(ctx context.Context) error) error {
	delay := opt.Delay
	if delay == nil {
		delay = Backoff
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if opt.OnAttempt != nil {
			opt.OnAttempt(opt.Name, attempt)
		}
		err := fn(ctx)
		if err == nil {
			if attempt > 1 {
				opt.Log.Info().Str("service", opt.Name).Int("attempt", attempt).Msgf("%s: connected", opt.Name)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return opt.Redactor.Error(perm.err)
		}
		wait := delay(attempt)
		left := time.Until(opt.Deadline)
		if left <= 0 {
			return fmt.Errorf("%s: %w after %d attempts in %s: %w",
				opt.Name, ErrGaveUp, attempt, time.Since(start).Round(100*time.Millisecond), opt.Redactor.Error(err))
		}
		wait = min(wait, left)
		opt.Log.Warn().Str("service", opt.Name).Int("attempt", attempt).
			Dur("next_delay_ms", wait).Str("error", opt.Redactor.Redact(err.Error())).
			Msgf("%s: not reachable yet, retrying", opt.Name)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Backoff is the wait before retry n (1, 2, …): BaseDelay doubled per retry,
// capped at MaxDelay, plus up to 25% jitter.
func Backoff(n int) time.Duration {
	d := MaxDelay
	if n < 16 {
		d = min(BaseDelay<<(n-1), MaxDelay)
	}
	return d + rand.N(d/4+1)
}
