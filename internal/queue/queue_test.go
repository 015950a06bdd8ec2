package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// bundle is what a test needs against its own Redis database.
type bundle struct {
	redis     asynq.RedisConnOpt
	client    *asynq.Client
	inspector *asynq.Inspector
}

func setup(t *testing.T) bundle {
	t.Helper()
	opt := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	b := bundle{redis: opt, client: asynq.NewClient(opt), inspector: asynq.NewInspector(opt)}
	t.Cleanup(func() {
		_ = b.client.Close()
		_ = b.inspector.Close()
	})
	return b
}

// symbolsN returns n distinct valid symbols.
func symbolsN(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("S%05d", i)
	}
	return s
}

// mustEnqueue enqueues symbols and fails the test on any error.
func mustEnqueue(t *testing.T, b bundle, symbols []string, opts ...asynq.Option) []Result {
	t.Helper()
	res, err := Enqueue(t.Context(), b.client, symbols, opts, 0)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return res
}

// statsOf returns the stats of one queue, failing the test if it is missing.
func statsOf(t *testing.T, b bundle, queue string) QueueStats {
	t.Helper()
	all, err := Stats(t.Context(), b.inspector)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, s := range all {
		if s.Queue == queue {
			return s
		}
	}
	t.Fatalf("Stats: no queue %q in %+v", queue, all)
	return QueueStats{}
}

// runWorker processes quote:fetch tasks with a no-op handler until the test ends.
func runWorker(t *testing.T, b bundle, queues ...string) {
	t.Helper()
	weights := map[string]int{}
	for _, q := range queues {
		weights[q] = 1
	}
	srv := asynq.NewServer(b.redis, asynq.Config{
		Concurrency:       8,
		Queues:            weights,
		Logger:            logging.Asynq{L: zerolog.Nop()},
		LogLevel:          asynq.FatalLevel,
		TaskCheckInterval: 50 * time.Millisecond,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeQuoteFetch, func(context.Context, *asynq.Task) error { return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func TestEnqueueThenStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 5000
	symbols := symbolsN(n)
	symbols[0], symbols[1] = "goog", "brk.b" // Enqueue normalizes too

	res := mustEnqueue(t, b, symbols)

	if len(res) != n {
		t.Fatalf("got %d results, want %d", len(res), n)
	}
	ids := make(map[string]bool, n)
	for i, r := range res {
		if r.Symbol != symbols[i] || r.Queue != "default" || r.ID == "" || r.Err != nil {
			t.Fatalf("result %d = %+v, want symbol %q in queue default with an ID", i, r, symbols[i])
		}
		ids[r.ID] = true
	}
	if len(ids) != n {
		t.Errorf("got %d distinct IDs, want %d", len(ids), n)
	}
	info, err := b.inspector.GetTaskInfo("default", res[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"symbol":"BRK.B"}`; string(info.Payload) != want {
		t.Errorf("payload = %s, want %s", info.Payload, want)
	}

	want := QueueStats{Queue: "default", Pending: n}
	if got := statsOf(t, b, "default"); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestEnqueueOptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := mustEnqueue(t, b, []string{"GOOG", "MSFT"}, asynq.Queue("low"), asynq.ProcessIn(time.Hour), asynq.MaxRetry(2))
	for _, r := range res {
		if r.Queue != "low" {
			t.Errorf("result %+v: want queue low", r)
		}
		info, err := b.inspector.GetTaskInfo("low", r.ID)
		if err != nil {
			t.Fatal(err)
		}
		// MaxRetry(2) is the caller's, in the header; asynq has one more
		// (see tasks.HeaderMaxRetry).
		if info.State != asynq.TaskStateScheduled || info.Headers[tasks.HeaderMaxRetry] != "2" || info.MaxRetry != 3 || info.Timeout != tasks.DefaultTimeout {
			t.Errorf("task %s: state %v, max retry %q (asynq %d), timeout %v; want scheduled, 2 (asynq 3), %v",
				r.ID, info.State, info.Headers[tasks.HeaderMaxRetry], info.MaxRetry, info.Timeout, tasks.DefaultTimeout)
		}
	}

	all, err := Stats(t.Context(), b.inspector)
	if err != nil {
		t.Fatal(err)
	}
	if want := []QueueStats{{Queue: "low", Scheduled: 2}}; len(all) != 1 || all[0] != want[0] {
		t.Errorf("Stats = %+v, want %+v", all, want)
	}
}

func TestEnqueueUnique(t *testing.T) {
	t.Parallel()
	b := setup(t)
	unique := []asynq.Option{asynq.Unique(time.Minute)}

	res, err := Enqueue(t.Context(), b.client, []string{"GOOG", "MSFT", "goog"}, unique, 0)
	if err != nil {
		t.Fatalf("Enqueue: %v (duplicates must not be errors)", err)
	}
	if res[0].Skipped() || res[1].Skipped() || !res[2].Skipped() {
		t.Fatalf("skipped = %v %v %v, want only the third", res[0].Skipped(), res[1].Skipped(), res[2].Skipped())
	}
	if res[2].ID != "" || res[2].Queue != "default" || !errors.Is(res[2].Err, asynq.ErrDuplicateTask) {
		t.Errorf("duplicate result = %+v", res[2])
	}

	res, err = Enqueue(t.Context(), b.client, []string{"MSFT", "AAPL"}, unique, 0)
	if err != nil {
		t.Fatalf("second Enqueue: %v", err)
	}
	if !res[0].Skipped() || res[1].Skipped() {
		t.Errorf("second run skipped = %v %v, want true false", res[0].Skipped(), res[1].Skipped())
	}
	if got := statsOf(t, b, "default").Pending; got != 3 {
		t.Errorf("pending = %d, want 3", got)
	}
}

func TestEnqueueFailures(t *testing.T) {
	t.Parallel()

	t.Run("bad symbol does not stop the rest", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := Enqueue(t.Context(), b.client, []string{"GOOG", "BAD$", "MSFT"}, nil, 2)
		if !errors.Is(err, ErrEnqueue) || !errors.Is(err, tasks.ErrInvalidSymbol) {
			t.Fatalf("Enqueue error = %v, want ErrEnqueue wrapping tasks.ErrInvalidSymbol", err)
		}
		if !strings.Contains(err.Error(), "1 of 3") {
			t.Errorf("error %q does not count the failures", err)
		}
		if res[0].ID == "" || res[1].Err == nil || res[1].Skipped() || res[2].ID == "" {
			t.Errorf("results = %+v", res)
		}
		if got := statsOf(t, b, "default").Pending; got != 2 {
			t.Errorf("pending = %d, want 2", got)
		}
	})

	t.Run("unreachable redis", func(t *testing.T) {
		t.Parallel()
		client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
		t.Cleanup(func() { _ = client.Close() })
		res, err := Enqueue(t.Context(), client, []string{"GOOG", "MSFT"}, nil, 0)
		if !errors.Is(err, ErrEnqueue) || !strings.Contains(err.Error(), "2 of 2") {
			t.Fatalf("Enqueue error = %v, want ErrEnqueue for 2 of 2", err)
		}
		for _, r := range res {
			if r.Err == nil || r.Skipped() {
				t.Errorf("result %+v, want a failure", r)
			}
		}
	})

	t.Run("cancelled context enqueues nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		res, err := Enqueue(ctx, b.client, symbolsN(100), nil, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Enqueue error = %v, want context.Canceled", err)
		}
		for i, r := range res {
			if r.ID != "" || !errors.Is(r.Err, context.Canceled) || r.Symbol != symbolsN(100)[i] {
				t.Fatalf("result %d = %+v", i, r)
			}
		}
		if all, err := Stats(t.Context(), b.inspector); err != nil || len(all) != 0 {
			t.Errorf("Stats = %+v, %v; want no queues", all, err)
		}
	})
}

func TestStatsEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t)
	all, err := Stats(t.Context(), b.inspector)
	if err != nil || all == nil || len(all) != 0 {
		t.Fatalf("Stats = %#v, %v; want an empty, non-nil slice", all, err)
	}
}

func TestStatsSortedAndTotals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustEnqueue(t, b, symbolsN(3), asynq.Queue("zeta"))
	mustEnqueue(t, b, symbolsN(2), asynq.Queue("alpha"))
	runWorker(t, b, "alpha")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := Wait(ctx, b.inspector, []string{"alpha"}, 20*time.Millisecond, nil); err != nil {
		t.Fatalf("Wait(alpha): %v", err)
	}
	all, err := Stats(t.Context(), b.inspector)
	if err != nil {
		t.Fatal(err)
	}
	want := []QueueStats{
		{Queue: "alpha", Completed: 2, Processed: 2},
		{Queue: "zeta", Pending: 3},
	}
	if len(all) != len(want) || all[0] != want[0] || all[1] != want[1] {
		t.Errorf("Stats = %+v, want %+v", all, want)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()

	t.Run("nothing to wait for", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		mustEnqueue(t, b, []string{"GOOG"}, asynq.Queue("low"))
		runWorker(t, b, "low")
		for _, tc := range []struct {
			queues, want []string
		}{
			{nil, []string{"low"}},
			{[]string{"never-created", "default", "default"}, []string{"default", "never-created"}},
		} {
			var first []string
			watched, err := Wait(ctx, b.inspector, tc.queues, 0, func(w []string) { first = w })
			if err != nil || !slices.Equal(watched, tc.want) || !slices.Equal(first, tc.want) {
				t.Errorf("Wait(%q) = %q, %v, started with %q; want %q watched", tc.queues, watched, err, first, tc.want)
			}
		}
	})

	t.Run("other queues are ignored", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		mustEnqueue(t, b, []string{"GOOG"}, asynq.Queue("low"))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := Wait(ctx, b.inspector, []string{"default"}, 0, nil); err != nil {
			t.Errorf("Wait(default) = %v, want nil", err)
		}
	})

	t.Run("times out naming what is left", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		mustEnqueue(t, b, symbolsN(3))
		mustEnqueue(t, b, []string{"GOOG"}, asynq.ProcessIn(time.Hour), asynq.Queue("low"))
		tests := []struct {
			queues []string
			want   string
		}{
			{nil, "still outstanding: default (pending 3, active 0, scheduled 0, retry 0; no running worker serves it), low (pending 0, active 0, scheduled 1, retry 0)"},
			{[]string{"low"}, "still outstanding: low (pending 0, active 0, scheduled 1, retry 0)"},
		}
		runWorker(t, b, "low", "critical") // serves low, but not default
		for _, tt := range tests {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			start := time.Now()
			_, err := Wait(ctx, b.inspector, tt.queues, 0, nil)
			cancel()
			if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Wait(%q) = %v, want ErrTimeout with %q", tt.queues, err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Wait(%q) took %v past a 200ms deadline", tt.queues, d)
			}
		}
	})

	t.Run("cancel is not a timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		mustEnqueue(t, b, []string{"GOOG"})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := Wait(ctx, b.inspector, nil, 0, nil)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Errorf("Wait = %v, want context.Canceled", err)
		}
	})

	t.Run("returns once tasks are processed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const n = 200
		mustEnqueue(t, b, symbolsN(n))
		runWorker(t, b, "default")
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if _, err := Wait(ctx, b.inspector, nil, 0, nil); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
		got := statsOf(t, b, "default")
		if got.Outstanding() != 0 || got.Processed != n || got.Completed != n {
			t.Errorf("stats after Wait = %+v, want %d processed and completed", got, n)
		}
	})
}
