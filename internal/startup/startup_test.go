package startup

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/config"
)

var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused (password s3cret)")

// failing returns an fn that fails its first n calls with err, and the
// count of calls made.
func failing(n int, err error) (func(context.Context) error, *int) {
	calls := 0
	return func(context.Context) error {
		calls++
		if calls <= n {
			return err
		}
		return nil
	}, &calls
}

func TestConnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fails     int
		err       error
		timeout   time.Duration
		wantCalls int
		wantErr   error // nil: success
	}{
		{name: "first try", fails: 0, err: errDown, timeout: time.Second, wantCalls: 1},
		{name: "after three failures", fails: 3, err: errDown, timeout: time.Second, wantCalls: 4},
		{name: "try once", fails: 1, err: errDown, timeout: 0, wantCalls: 1, wantErr: ErrGaveUp},
		{name: "gives up", fails: 1000, err: errDown, timeout: 50 * time.Millisecond, wantErr: ErrGaveUp},
		{name: "permanent", fails: 1000, err: Permanent(errDown), timeout: time.Second, wantCalls: 1, wantErr: errDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			var attempts []int
			fn, calls := failing(tc.fails, tc.err)
			err := Connect(context.Background(), Options{
				Name: "postgres", Deadline: time.Now().Add(tc.timeout), Redactor: config.NewRedactor("", "postgres://u:s3cret@127.0.0.1/db"),
				Log:       zerolog.New(&logs),
				OnAttempt: func(_ string, n int) { attempts = append(attempts, n) },
				Delay:     func(int) time.Duration { return 5 * time.Millisecond },
			}, fn)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Connect = %v, want success", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Connect = %v, want %v", err, tc.wantErr)
			}
			if tc.wantCalls != 0 && *calls != tc.wantCalls {
				t.Errorf("fn called %d times, want %d", *calls, tc.wantCalls)
			}
			if len(attempts) != *calls || (len(attempts) > 0 && attempts[len(attempts)-1] != *calls) {
				t.Errorf("OnAttempt saw %v for %d calls", attempts, *calls)
			}
			for _, s := range []string{logs.String(), errText(err)} {
				if strings.Contains(s, "s3cret") {
					t.Errorf("secret leaked: %s", s)
				}
			}
			if tc.fails > 0 && tc.timeout > 0 && tc.wantErr != errDown && !strings.Contains(logs.String(), `"attempt":1,"next_delay_ms":`) {
				t.Errorf("no attempt line logged: %s", logs.String())
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestConnectCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	fn, _ := failing(1000, errDown)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := Connect(ctx, Options{Name: "redis", Deadline: time.Now().Add(time.Minute), Log: zerolog.Nop(),
		Delay: func(int) time.Duration { return 30 * time.Second }}, fn)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %s after cancel, want prompt", d)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n        int
		min, max time.Duration
	}{
		{1, BaseDelay, BaseDelay * 5 / 4},
		{2, 2 * BaseDelay, 2 * BaseDelay * 5 / 4},
		{5, 4 * time.Second, 5 * time.Second},
		{6, MaxDelay, MaxDelay * 5 / 4},
		{100, MaxDelay, MaxDelay * 5 / 4},
	}
	for _, tc := range tests {
		for range 50 {
			if d := Backoff(tc.n); d < tc.min || d > tc.max {
				t.Errorf("Backoff(%d) = %s, want in [%s, %s]", tc.n, d, tc.min, tc.max)
			}
		}
	}
}

// A program connecting to several services in turn gives them one budget:
// a stage that starts after the shared deadline tries once, and one that
// starts before it retries only until it.
func TestConnectSharedDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		deadline time.Duration // from now
		maxCalls int
	}{
		{name: "deadline passed", deadline: -time.Second, maxCalls: 1},
		{name: "deadline ahead", deadline: 60 * time.Millisecond, maxCalls: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fn, calls := failing(1000, errDown)
			start := time.Now()
			err := Connect(context.Background(), Options{
				Name: "redis", Deadline: start.Add(tc.deadline), Log: zerolog.Nop(),
				Delay: func(int) time.Duration { return 5 * time.Millisecond },
			}, fn)
			if !errors.Is(err, ErrGaveUp) {
				t.Fatalf("Connect = %v, want ErrGaveUp", err)
			}
			if *calls > tc.maxCalls {
				t.Errorf("fn called %d times, want at most %d", *calls, tc.maxCalls)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Connect took %s, want it to stop at the deadline", d)
			}
		})
	}
}
