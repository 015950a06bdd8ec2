package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// fetchErr wraps err the way the handler does.
func fetchErr(err error) error { return fmt.Errorf("fetch GOOG: %w", err) }

func status(code int) error { return fetchErr(&StatusError{Code: code, Body: "answer"}) }

func TestClassify(t *testing.T) {
	t.Parallel()
	netErr := &url.Error{Op: "Get", URL: "http://127.0.0.1:8000/api/v1/quote?symbol=GOOG",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	resetErr := &url.Error{Op: "Get", URL: "http://127.0.0.1:8000/api/v1/quote?symbol=GOOG",
		Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}
	for _, tc := range []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, Success},

		{"unknown symbol", fetchErr(fmt.Errorf("%w %q", ErrUnknownSymbol, "NOPE")), Permanent},
		{"invalid quote", fetchErr(fmt.Errorf("%w: c is missing", ErrInvalidQuote)), Permanent},
		{"body too large", fetchErr(fmt.Errorf("%w: %w: over", ErrInvalidQuote, errors.New("body too large"))), Permanent},
		{"400", status(400), Permanent},
		{"401", status(401), Permanent},
		{"403", status(403), Permanent},
		{"404", status(404), Permanent},
		// The contract's table has no row for 408: it is one of the "other
		// 4xx", so permanent.
		{"408", status(408), Permanent},
		{"422", status(422), Permanent},
		{"429", status(429), RateLimited},
		{"429 with Retry-After", fetchErr(&StatusError{Code: 429, RetryAfter: 7 * time.Second}), RateLimited},
		{"429 joined", errors.Join(errors.New("other"), &StatusError{Code: 429}), RateLimited},
		{"500", status(500), Transient},
		{"502", status(502), Transient},
		{"503", status(503), Transient},
		{"bare 503", &StatusError{Code: 503}, Transient},

		{"database rejected", fmt.Errorf("save GOOG: %w: %w", ErrRejected, errors.New("check violation")), Permanent},
		{"database down", fmt.Errorf("save GOOG: %w", netErr), Transient},
		{"deadline exceeded", fetchErr(fmt.Errorf("quote request: %w", context.DeadlineExceeded)), Transient},
		{"canceled", fetchErr(context.Canceled), Transient},
		{"net error refused", fetchErr(netErr), Transient},
		{"net error reset", fetchErr(resetErr), Transient},
		{"unexpected EOF", fetchErr(io.ErrUnexpectedEOF), Transient},
		{"anything else", errors.New("boom"), Transient},

		{"SkipRetry", asynq.SkipRetry, Permanent},
		{"SkipRetry joined", errors.Join(errors.New("boom"), asynq.SkipRetry), Permanent},
		{"SkipRetry wins over 503", errors.Join(status(503), asynq.SkipRetry), Permanent},
		{"invalid symbol", fmt.Errorf("%w %q", ErrInvalidSymbol, "a b"), Permanent},
		{"bad payload", fmt.Errorf("%w: %w", errBadPayload, errors.New("unexpected end of JSON input")), Permanent},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if tc.err == nil {
			continue
		}
		if got, want := IsFailure(tc.err), tc.want != RateLimited; got != want {
			t.Errorf("IsFailure(%s: %v) = %v, want %v", tc.name, tc.err, got, want)
		}
		// finish marks exactly the permanent failures with SkipRetry, and
		// keeps the original error inspectable.
		got := finish(tc.err)
		if skip := errors.Is(got, asynq.SkipRetry); skip != (tc.want == Permanent) {
			t.Errorf("finish(%s: %v) = %v; wraps SkipRetry %v, want %v", tc.name, tc.err, got, skip, tc.want == Permanent)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("finish(%s: %v) = %v, which no longer wraps the original error", tc.name, tc.err, got)
		}
		if Classify(got) != tc.want {
			t.Errorf("Classify(finish(%s)) = %v, want %v", tc.name, Classify(got), tc.want)
		}
	}
}

func TestFinish(t *testing.T) {
	t.Parallel()
	if err := finish(nil); err != nil {
		t.Errorf("finish(nil) = %v", err)
	}
	// An error that already carries SkipRetry is passed through as is.
	already := errors.Join(errors.New("boom"), asynq.SkipRetry)
	if got := finish(already); got != already {
		t.Errorf("finish(%v) = %v, want the same error", already, got)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[Class]string{
		Success: "success", Transient: "transient", RateLimited: "rate_limited", Permanent: "permanent", Class(42): "unknown",
	} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

func TestRetryDelayRateLimited(t *testing.T) {
	t.Parallel()
	task := asynq.NewTask(TypeQuoteFetch, []byte(`{"symbol":"GOOG"}`))
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"Retry-After", fetchErr(&StatusError{Code: 429, RetryAfter: 7 * time.Second}), 7 * time.Second},
		{"Retry-After 1h", fetchErr(&StatusError{Code: 429, RetryAfter: time.Hour}), time.Hour},
		{"no Retry-After", status(429), DefaultRateLimitDelay},
		{"Retry-After in the past", fetchErr(&StatusError{Code: 429, RetryAfter: 0}), DefaultRateLimitDelay},
	} {
		// The delay is the server's, whatever the retry count and without
		// jitter.
		for _, n := range []int{0, 1, 5, 30} {
			if got := RetryDelay(n, tc.err, task); got != tc.want {
				t.Errorf("RetryDelay(%d, %s) = %v, want %v", n, tc.name, got, tc.want)
			}
		}
	}
	// A Retry-After on a 5xx does not make it rate limited.
	err := fetchErr(&StatusError{Code: 503, RetryAfter: time.Hour})
	if got := RetryDelay(0, err, task); got < backoffBase || got > backoffBase*6/5 {
		t.Errorf("RetryDelay(0, 503 with Retry-After 1h) = %v, want the backoff of 1s..1.2s", got)
	}
}

func TestRetryDelayBackoff(t *testing.T) {
	t.Parallel()
	task := asynq.NewTask(TypeQuoteFetch, []byte(`{"symbol":"GOOG"}`))
	for _, err := range []error{status(503), fetchErr(context.DeadlineExceeded), errors.New("boom")} {
		prevBase := time.Duration(0)
		for n := range 40 {
			base := min(time.Second<<min(n, 30), 10*time.Minute)
			if base < prevBase {
				t.Fatalf("test bug: base for n=%d shrank", n)
			}
			prevBase = base
			lo, hi := base, base+base/5
			seen := map[time.Duration]bool{}
			for range 50 {
				d := RetryDelay(n, err, task)
				if d < lo || d > hi {
					t.Fatalf("RetryDelay(%d, %v) = %v, want %v..%v (at most 20%% jitter)", n, err, d, lo, hi)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("RetryDelay(%d, %v) gave the same %d values every time: no jitter", n, err, len(seen))
			}
		}
	}
	// Spot checks of the documented schedule: 1 s doubling, capped at 10 min.
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, time.Second, 1200 * time.Millisecond},
		{1, 2 * time.Second, 2400 * time.Millisecond},
		{3, 8 * time.Second, 9600 * time.Millisecond},
		{9, 512 * time.Second, 614400 * time.Millisecond},
		{10, 10 * time.Minute, 12 * time.Minute},
		{19, 10 * time.Minute, 12 * time.Minute},
		{20, 10 * time.Minute, 12 * time.Minute},
		{64, 10 * time.Minute, 12 * time.Minute},
		{1 << 20, 10 * time.Minute, 12 * time.Minute},
	} {
		if d := RetryDelay(tc.n, status(500), task); d < tc.lo || d > tc.hi {
			t.Errorf("RetryDelay(%d, 500) = %v, want %v..%v", tc.n, d, tc.lo, tc.hi)
		}
	}
}
