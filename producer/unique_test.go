package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// uniqueWorker serves queue with a handler that decides by symbol: HOLD
// runs until release is called, FAIL fails (and waits an hour to retry),
// DEAD fails for good (archived), any other symbol succeeds.
func uniqueWorker(t *testing.T, redisURL, queue string) (release func()) {
	t.Helper()
	cfg := asynq.Config{
		Concurrency:    4,
		Queues:         map[string]int{queue: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
	}
	return testenv.HoldingWorker(t, testenv.RedisClientOpt(t, redisURL), cfg,
		func(ctx context.Context, task *asynq.Task, held <-chan struct{}) error {
			switch tasks.Symbol(task) {
			case "HOLD":
				select {
				case <-held:
				case <-ctx.Done():
					return ctx.Err()
				}
			case "FAIL":
				return errors.New("upstream down")
			case "DEAD":
				return asynq.SkipRetry
			}
			return nil
		})
}

// TestEnqueueUniqueLock proves each sentence of enqueue --help on --unique
// against asynq: the lock refuses a repeat while the first task is
// pending, scheduled, active, waiting to retry or archived; it goes when
// the task completes or is deleted, and when its time runs out.
func TestEnqueueUniqueLock(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	inspector := asynq.NewInspector(testenv.RedisClientOpt(t, url))
	defer inspector.Close()
	release := uniqueWorker(t, url, "uniq")

	// enqueue runs enqueue --unique and returns the task's id, or "" when
	// the symbol was skipped, checking what a skip prints.
	enqueue := func(t *testing.T, queue, unique, symbol string, more ...string) string {
		t.Helper()
		r := run(t, url, "", append([]string{"enqueue", "--queue", queue, "--unique", unique, symbol}, more...)...)
		wantCode(t, r, 0, "enqueue --unique "+symbol)
		if r.stdout == "" {
			skipped := "producer: skipped " + symbol + ": an earlier --unique task for it in queue " + queue +
				" holds the lock (until it completes or is deleted, or the --unique time runs out)\n"
			if !strings.HasPrefix(r.stderr, skipped) {
				t.Errorf("stderr %q, want it to start %q", r.stderr, skipped)
			}
			return ""
		}
		return ids(r.stdout)[0]
	}
	refused := func(t *testing.T, queue, symbol, while string) {
		t.Helper()
		if id := enqueue(t, queue, "1h", symbol); id != "" {
			t.Errorf("%s: a repeat of %s was enqueued (%s) while the first is %s", symbol, symbol, id, while)
		}
	}
	accepted := func(t *testing.T, queue, symbol, after string) {
		t.Helper()
		if enqueue(t, queue, "1h", symbol) == "" {
			t.Errorf("%s: a repeat was skipped after the first %s", symbol, after)
		}
	}

	t.Run("pending", func(t *testing.T) {
		enqueue(t, "idle", "1h", "PEND")
		refused(t, "idle", "PEND", "pending")
	})
	t.Run("scheduled", func(t *testing.T) {
		id := enqueue(t, "idle", "1h", "LATER", "--in", "1h")
		testenv.WaitTaskState(t, inspector, "idle", id, asynq.TaskStateScheduled)
		refused(t, "idle", "LATER", "scheduled")
	})
	t.Run("active, then completed", func(t *testing.T) {
		id := enqueue(t, "uniq", "1h", "HOLD")
		testenv.WaitTaskState(t, inspector, "uniq", id, asynq.TaskStateActive)
		refused(t, "uniq", "HOLD", "active")
		release()
		testenv.WaitTaskState(t, inspector, "uniq", id, asynq.TaskStateCompleted)
		accepted(t, "uniq", "HOLD", "completed")
	})
	t.Run("retrying", func(t *testing.T) {
		id := enqueue(t, "uniq", "1h", "FAIL")
		testenv.WaitTaskState(t, inspector, "uniq", id, asynq.TaskStateRetry)
		refused(t, "uniq", "FAIL", "waiting to retry")
	})
	t.Run("archived, then deleted", func(t *testing.T) {
		id := enqueue(t, "uniq", "1h", "DEAD")
		testenv.WaitTaskState(t, inspector, "uniq", id, asynq.TaskStateArchived)
		refused(t, "uniq", "DEAD", "archived")
		mustRun(t, url, "", "tasks", "delete", "--queue", "uniq", "--state", "archived", id)
		accepted(t, "uniq", "DEAD", "was deleted")
	})
	t.Run("lock time runs out", func(t *testing.T) {
		first := enqueue(t, "idle", "1s", "BRIEF")
		var second string
		for deadline := time.Now().Add(15 * time.Second); second == "" && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			second = enqueue(t, "idle", "1s", "BRIEF")
		}
		if first == "" || second == "" {
			t.Fatalf("BRIEF: enqueued %q, then %q: want a second task once the 1s lock ran out", first, second)
		}
		testenv.WaitTaskState(t, inspector, "idle", first, asynq.TaskStatePending) // the first has not run, yet there are two
		testenv.WaitTaskState(t, inspector, "idle", second, asynq.TaskStatePending)
	})
}
