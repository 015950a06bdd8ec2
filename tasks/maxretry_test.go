package tasks_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/tasks"
)

// arrivals records when each request reached the fake API.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) record(next answer) answer {
	return func(w http.ResponseWriter, r *http.Request, n int32) {
		a.mu.Lock()
		a.at = append(a.at, time.Now())
		a.mu.Unlock()
		next(w, r, n)
	}
}

func (a *arrivals) gap(i, j int) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if j >= len(a.at) {
		return -1
	}
	return a.at[j].Sub(a.at[i])
}

// checkEnqueued checks what NewQuoteFetchTask gave asynq for a caller's
// MaxRetry n: n+1, and n in the header.
func checkEnqueued(t *testing.T, info *asynq.TaskInfo, n int) {
	t.Helper()
	if info.MaxRetry != n+1 {
		t.Errorf("asynq MaxRetry %d, want %d: one more than the caller's %d", info.MaxRetry, n+1, n)
	}
	if got := info.Headers[tasks.HeaderMaxRetry]; got != strconv.Itoa(n) {
		t.Errorf("header %s = %q, want %d", tasks.HeaderMaxRetry, got, n)
	}
}

// archivedAfter is how a test expects a task to end: archived by the
// handler after retried retries, having asked the quote API calls times,
// counted failed failures, its last error mentioning each of lastErr.
type archivedAfter struct {
	retried int
	calls   int32
	failed  int
	lastErr []string
}

// checkArchived checks that info ended as want says, and that no attempt
// follows within the forwarding interval.
func (e *env) checkArchived(t *testing.T, api *fakeAPI, info *asynq.TaskInfo, want archivedAfter) {
	t.Helper()
	if info.State != asynq.TaskStateArchived || info.Retried != want.retried {
		t.Errorf("state %v after %d retries, want archived after %d", info.State, info.Retried, want.retried)
	}
	for _, s := range want.lastErr {
		if !strings.Contains(info.LastErr, s) {
			t.Errorf("LastErr = %q, want it to mention %q", info.LastErr, s)
		}
	}
	if strings.Contains(info.LastErr, asynq.SkipRetry.Error()) {
		t.Errorf("LastErr = %q carries asynq's wording", info.LastErr)
	}
	time.Sleep(2 * time.Second) // an extra attempt would come within the forwarding interval
	if n := api.calls.Load(); n != want.calls {
		t.Errorf("quote API asked %d times, want %d", n, want.calls)
	}
	if failed, total := e.queueFailures(t, info.Queue); failed != want.failed || total != want.failed {
		t.Errorf("failed counters %d/%d, want %d", failed, total, want.failed)
	}
}

// TestLastAttemptRateLimitGoesBack is issue 7's case: with MaxRetry 1, a 500
// uses up the one retry, and the 429 that follows on the last allowed
// attempt must neither archive the task nor hold the worker slot for its
// Retry-After (3 s, three times the attempt's timeout): the task goes back
// to asynq, runs again after the Retry-After, and completes.
func TestLastAttemptRateLimitGoesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "LAST.B", "last_attempt_back"
	var arr arrivals
	api := newFakeAPI(t, symbol, arr.record(sequence(
		body(500, "boom"), rateLimited(func() string { return "3" }), ok(quoteJSON("10.5")))))
	e.startWorker(t, api.URL, queue, workerForward)
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(1), asynq.Timeout(time.Second))
	checkEnqueued(t, enq, 1)

	info := e.waitFinished(t, queue, enq.ID)
	e.checkStored(t, info, symbol, "10.5")
	if n := api.calls.Load(); n != 3 {
		t.Errorf("quote API asked %d times, want 3 (500, 429, 200)", n)
	}
	if g := arr.gap(1, 2); g < 2500*time.Millisecond || g > 6*time.Second {
		t.Errorf("the 200 came %v after the 429, want about its Retry-After of 3s", g)
	}
	if info.Retried != 1 {
		t.Errorf("retried %d, want 1: the 500 only", info.Retried)
	}
	if failed, total := e.queueFailures(t, queue); failed != 1 || total != 1 {
		t.Errorf("failed counters %d/%d, want 1: the 500 only", failed, total)
	}
}

// TestRetriesExhausted: with MaxRetry 2 and an upstream that keeps
// answering 500, the task is archived after exactly three attempts, by the
// handler (asynq would allow one more), each counted as a failure.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "EXH.A", "exhausted"
	api := newFakeAPI(t, symbol, body(500, "boom"))
	e.startWorker(t, api.URL, queue, workerForward)
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(2))
	checkEnqueued(t, enq, 2)

	e.checkArchived(t, api, e.waitFinished(t, queue, enq.ID), archivedAfter{
		retried: 2, calls: 3, failed: 3, lastErr: []string{"retries exhausted (2 allowed)", "500"}})
}

// TestNoRetries: with MaxRetry 0 a rate limit is still no failure (the 429
// goes back to asynq and the task runs again after its Retry-After), and
// the first counted failure archives the task, without a retry.
func TestNoRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "ZERO.R", "no_retries"
	var arr arrivals
	api := newFakeAPI(t, symbol, arr.record(sequence(rateLimited(func() string { return "2" }), body(500, "boom"))))
	e.startWorker(t, api.URL, queue, workerForward)
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(0))
	checkEnqueued(t, enq, 0)

	e.checkArchived(t, api, e.waitFinished(t, queue, enq.ID), archivedAfter{
		retried: 0, calls: 2, failed: 1, lastErr: []string{"retries exhausted (0 allowed)", "500"}})
	// asynq keeps a retry's time in whole seconds, so it may come up to 1s
	// early.
	if g := arr.gap(0, 1); g < time.Second {
		t.Errorf("asked again %v after the 429, want about its Retry-After of 2s", g)
	}
}

// TestLastAttemptTimeout: an attempt that times out on the last allowed
// attempt is archived then, without one attempt more, although asynq, which
// has one retry more, would retry its own timeout.
func TestLastAttemptTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "SLOW.L", "last_attempt_timeout"
	api := newFakeAPI(t, symbol, sequence(body(500, "boom"), hang))
	// The quote client waits longer than the attempt may take.
	e.startWorker(t, api.URL, queue, workerForward, withQuoteTimeout(10*time.Second))
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(1), asynq.Timeout(time.Second))

	e.checkArchived(t, api, e.waitFinished(t, queue, enq.ID), archivedAfter{
		retried: 1, calls: 2, failed: 2, lastErr: []string{"retries exhausted (1 allowed)", "deadline exceeded"}})
}

// TestFailureCountedByAsynqPastTheLimit: when asynq counts a failure the
// handler never returned on the last allowed attempt (here a middleware
// stuck past the attempt's deadline, as a crashed worker's expired lease
// would be), the attempt that follows archives the task at once, before any
// request, and without waiting for a backoff.
func TestFailureCountedByAsynqPastTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const symbol, queue = "STUCK", "past_the_limit"
	api := newFakeAPI(t, symbol, body(500, "boom"))
	var stuck atomic.Bool
	e.startWorker(t, api.URL, queue, workerForward, withMiddleware(func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			if n, _ := asynq.GetRetryCount(ctx); n == 1 && stuck.CompareAndSwap(false, true) {
				<-ctx.Done()
				time.Sleep(200 * time.Millisecond) // asynq has handled its timeout by now
				return ctx.Err()
			}
			return next.ProcessTask(ctx, task)
		})
	}))
	enq := e.enqueue(t, symbol, queue, asynq.MaxRetry(1), asynq.Timeout(time.Second))

	info := e.waitFinished(t, queue, enq.ID)
	if info.State != asynq.TaskStateArchived || info.Retried != 2 {
		t.Errorf("state %v after %d retries, want archived after 2 (asynq counted the timeout)", info.State, info.Retried)
	}
	if !strings.Contains(info.LastErr, "retries exhausted (1 allowed)") {
		t.Errorf("LastErr = %q, want retries exhausted", info.LastErr)
	}
	if n := api.calls.Load(); n != 1 {
		t.Errorf("quote API asked %d times, want 1 (the 500)", n)
	}
	// The backoff after a second failure would be 2 s or more.
	if d := info.LastFailedAt.Sub(enq.NextProcessAt); d > 6*time.Second {
		t.Errorf("archived %v after the enqueue, want it soon after the timeout", d)
	}
}

// TestTaskWithoutHeader: a task built with asynq.NewTask by another program
// keeps asynq's limit: on its last attempt, a rate limit is waited out in
// the worker slot, and a counted failure is archived by asynq.
func TestTaskWithoutHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	enqueue := func(t *testing.T, symbol, queue string) *asynq.TaskInfo {
		t.Helper()
		info, err := e.qc.Enqueue(asynq.NewTask(tasks.TypeQuoteFetch, []byte(`{"symbol":"`+symbol+`"}`),
			asynq.Queue(queue), asynq.MaxRetry(1), asynq.Timeout(5*time.Second), asynq.Retention(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if info.MaxRetry != 1 || info.Headers[tasks.HeaderMaxRetry] != "" {
			t.Errorf("asynq MaxRetry %d, headers %v; want 1 and none", info.MaxRetry, info.Headers)
		}
		return info
	}

	// Not parallel: see TestQuoteFetchAnswers.
	t.Run("rate limit waited out in the slot", func(t *testing.T) {
		const symbol, queue = "NOHDR.A", "no_header_wait"
		var arr arrivals
		api := newFakeAPI(t, symbol, arr.record(sequence(
			body(500, "boom"), rateLimited(func() string { return "1" }), ok(quoteJSON("10.5")))))
		e.startWorker(t, api.URL, queue, workerForward)
		// Completed, so the 429 on asynq's last attempt was not returned to
		// asynq, which would have archived the task.
		info := e.waitFinished(t, queue, enqueue(t, symbol, queue).ID)
		e.checkStored(t, info, symbol, "10.5")
		if n := api.calls.Load(); n != 3 {
			t.Errorf("quote API asked %d times, want 3", n)
		}
		if g := arr.gap(1, 2); g < 900*time.Millisecond {
			t.Errorf("asked again %v after the 429, want its Retry-After of 1s", g)
		}
	})

	t.Run("archived by asynq", func(t *testing.T) {
		const symbol, queue = "NOHDR.B", "no_header_archived"
		api := newFakeAPI(t, symbol, body(500, "boom"))
		e.startWorker(t, api.URL, queue, workerForward)
		info := e.waitFinished(t, queue, enqueue(t, symbol, queue).ID)
		if info.State != asynq.TaskStateArchived || info.Retried != 1 {
			t.Errorf("state %v after %d retries, want archived after 1", info.State, info.Retried)
		}
		if strings.Contains(info.LastErr, "retries exhausted") {
			t.Errorf("LastErr = %q: the handler enforced a limit the task does not carry", info.LastErr)
		}
		if n := api.calls.Load(); n != 2 {
			t.Errorf("quote API asked %d times, want 2", n)
		}
	})
}

// TestMaxRetryHeader: the caller's limit (the last MaxRetry option wins, as
// in asynq) rides in the header, and RetryDelay brings back at once a task
// whose failure asynq counted past it.
func TestMaxRetryHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts []asynq.Option
		want string
	}{
		{nil, strconv.Itoa(tasks.DefaultMaxRetry)},
		{[]asynq.Option{asynq.MaxRetry(3)}, "3"},
		{[]asynq.Option{asynq.MaxRetry(3), asynq.MaxRetry(5)}, "5"},
	} {
		task, err := tasks.NewQuoteFetchTask("GOOG", tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := task.Headers()[tasks.HeaderMaxRetry]; got != tc.want {
			t.Errorf("options %v: header %q, want %q", tc.opts, got, tc.want)
		}
		n, _ := strconv.Atoi(tc.want)
		if got := tasks.MaxRetry(context.Background(), task); got != n {
			t.Errorf("options %v: MaxRetry = %d, want %d", tc.opts, got, n)
		}
	}
	deadline := time.Now().Add(time.Hour)
	task, err := tasks.NewQuoteFetchTaskWithDeadline("GOOG", deadline, asynq.MaxRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	if h := task.Headers(); h[tasks.HeaderMaxRetry] != "2" || h[tasks.HeaderDeadline] == "" {
		t.Errorf("headers %v, want the deadline and max retry 2", h)
	}
	if got := tasks.MaxRetry(context.Background(), asynq.NewTask(tasks.TypeQuoteFetch, nil)); got != 0 {
		t.Errorf("MaxRetry of a task without the header, outside asynq = %d, want 0", got)
	}

	transient := &tasks.StatusError{Code: 500}
	limited := &tasks.StatusError{Code: 429, RetryAfter: 7 * time.Second}
	if d := tasks.RetryDelay(2, transient, task); d != 0 {
		t.Errorf("RetryDelay after the last allowed attempt = %v, want 0: the next attempt only archives", d)
	}
	if d := tasks.RetryDelay(1, transient, task); d < 2*time.Second {
		t.Errorf("RetryDelay(1) = %v, want the backoff", d)
	}
	if d := tasks.RetryDelay(2, limited, task); d != 7*time.Second {
		t.Errorf("RetryDelay of a 429 on the last allowed attempt = %v, want its Retry-After", d)
	}
}
