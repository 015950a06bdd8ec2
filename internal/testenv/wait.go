package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
)

// WaitUntil polls cond every few milliseconds until it holds, failing the
// test when timeout (a wide bound) passes first; what names the state in
// that failure.
func WaitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitTaskState waits up to 15 s until task id of queue is in state, as
// inspector sees it, failing with what it saw last.
func WaitTaskState(t testing.TB, inspector *asynq.Inspector, queue, id string, state asynq.TaskState) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := inspector.GetTaskInfo(queue, id)
		if err == nil && info.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s of queue %s: %v (%v), want %s within 15s", id, queue, info, err, state)
		}
	}
}

// HoldingWorker starts an asynq worker on redis, set up by cfg (silent
// unless cfg names a Logger), that runs every task with handle, and shuts
// it down when the test ends. handle may keep a task active by waiting on
// held, which stays open until release is called: by the test, or at the
// latest when the test ends, before the worker shuts down.
func HoldingWorker(t testing.TB, redis asynq.RedisConnOpt, cfg asynq.Config,
	handle func(ctx context.Context, task *asynq.Task, held <-chan struct{}) error) (release func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger, cfg.LogLevel = logging.Asynq{L: zerolog.Nop()}, asynq.FatalLevel
	}
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	srv := asynq.NewServer(redis, cfg)
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		return handle(ctx, task, held)
	})); err != nil {
		t.Fatalf("testenv: start asynq worker: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	t.Cleanup(release) // runs first: a held task does not keep Shutdown waiting
	return release
}
