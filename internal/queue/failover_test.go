package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
)

// TestEnqueueFollowsSentinelFailover kills the master in the middle of an
// EnqueueAll through a redis-sentinel:// client: with Reconnect the run
// pauses, then enqueues the rest on the promoted replica with the same
// client; no symbol ends Failed.
func TestEnqueueFollowsSentinelFailover(t *testing.T) {
	t.Parallel()
	set := testenv.StartSentinelSet(t)
	opt, err := asynq.ParseRedisURI(set.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := NewRedisClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	client := asynq.NewClientFromRedisClient(rc)
	defer client.Close()

	const n = 20000
	syms := make([]string, n)
	for i := range syms {
		syms[i] = fmt.Sprintf("F%05d", i)
	}
	var reconnects, done atomic.Int64
	var reconnected atomic.Int64 // unix nanoseconds of the last successful reconnect
	cfg := EnqueueConfig{
		IDPrefix: "failover",
		Each:     func(Result) { done.Add(1) },
		Reconnect: func(ctx context.Context) error {
			reconnects.Add(1)
			err := WaitReachable(ctx, rc, 30*time.Second)
			if err == nil {
				reconnected.Store(time.Now().UnixNano())
			}
			return err
		},
	}
	type out struct {
		res []Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := EnqueueAll(t.Context(), client, syms, cfg)
		ch <- out{res, err}
	}()
	for done.Load() < n/10 {
		time.Sleep(time.Millisecond)
	}
	set.Master.Kill()
	killed := time.Now()
	doneAtKill := done.Load()
	set.WaitPromoted(set.Master.Addr(), 30*time.Second)
	promoted := time.Since(killed)
	o := <-ch

	count := map[EnqueueOutcome]int{}
	for _, r := range o.res {
		count[r.Outcome]++
	}
	t.Logf("killed the master after %d of %d results; promoted after %s; %d reconnect calls, the last back %s after the kill; outcomes %v; err %v",
		doneAtKill, n, promoted.Round(time.Millisecond), reconnects.Load(),
		time.Duration(reconnected.Load()-killed.UnixNano()).Round(time.Millisecond), count, o.err)
	if reconnects.Load() == 0 || count[Failed] != 0 || count[Unknown] != 0 {
		t.Fatalf("outcomes %v after %d reconnects; want none failed or unknown (with an ID prefix an unknown one is tried again)", count, reconnects.Load())
	}

	// What the promoted replica holds of what was acknowledged: asynchronous
	// replication may lose the last writes the old master acknowledged.
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	var lost int
	for _, r := range o.res {
		if _, err := insp.GetTaskInfo(DefaultQueue, r.ID); errors.Is(err, asynq.ErrTaskNotFound) {
			lost++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("acknowledged but not on the new master: %d of %d", lost, n)
}

// TestEnqueueReconnectGivesUp: when Reconnect fails, it is called once and
// the symbols not yet tried fail as before, not attempted.
func TestEnqueueReconnectGivesUp(t *testing.T) {
	t.Parallel()
	rc, err := NewRedisClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1"}) // nothing listens on port 1
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	client := asynq.NewClientFromRedisClient(rc)
	defer client.Close()
	syms := make([]string, 200)
	for i := range syms {
		syms[i] = fmt.Sprintf("G%03d", i)
	}
	var calls atomic.Int64
	res, err := EnqueueAll(t.Context(), client, syms, EnqueueConfig{
		Reconnect: func(context.Context) error { calls.Add(1); return errors.New("no master") },
	})
	if !errors.Is(err, ErrEnqueue) {
		t.Fatalf("err = %v, want ErrEnqueue", err)
	}
	notAttempted := 0
	for _, r := range res {
		if r.Outcome != Failed {
			t.Fatalf("%s: %v, want failed", r.Symbol, r.Outcome)
		}
		if errors.Is(r.Err, ErrNotAttempted) {
			notAttempted++
		}
	}
	if calls.Load() != 1 || notAttempted == 0 {
		t.Fatalf("Reconnect called %d times, %d not attempted; want 1 call and the rest not attempted", calls.Load(), notAttempted)
	}
}
