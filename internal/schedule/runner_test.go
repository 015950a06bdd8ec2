package schedule

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// world is one test's Redis with a way to make replicas on it.
type world struct {
	t         *testing.T
	opt       asynq.RedisConnOpt
	inspector *asynq.Inspector
}

func newWorld(t *testing.T) *world {
	t.Helper()
	opt := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	w := &world{t: t, opt: opt, inspector: asynq.NewInspector(opt)}
	t.Cleanup(func() { _ = w.inspector.Close() })
	return w
}

// replica returns a Runner with its own connections, as another process
// would have, recording its firings in obs.
func (w *world) replica(obs Observer, clock Clock) *Runner {
	w.t.Helper()
	rdb := w.opt.MakeRedisClient().(redis.UniversalClient)
	client := asynq.NewClientFromRedisClient(rdb)
	w.t.Cleanup(func() { _ = rdb.Close() })
	return &Runner{Client: client, Redis: rdb, Log: zerolog.Nop(), Clock: clock, Observer: obs}
}

// pendingIDs lists the ids of the pending tasks of queue.
func (w *world) pendingIDs(queue string) map[string]*asynq.TaskInfo {
	w.t.Helper()
	out := map[string]*asynq.TaskInfo{}
	for page := 1; ; page++ {
		list, err := w.inspector.ListPendingTasks(queue, asynq.PageSize(1000), asynq.Page(page))
		if err != nil {
			w.t.Fatal(err)
		}
		for _, ti := range list {
			if out[ti.ID] != nil {
				w.t.Fatalf("task %s listed twice", ti.ID)
			}
			out[ti.ID] = ti
		}
		if len(list) < 1000 {
			return out
		}
	}
}

// recorder is an Observer that keeps every firing.
type recorder struct {
	mu     sync.Mutex
	counts []Counts
}

func (r *recorder) ObserveFiring(_ string, c Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = append(r.counts, c)
}

func (r *recorder) all() []Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Counts(nil), r.counts...)
}

func symbolEntry(name string, every time.Duration, n int) *Entry {
	e := everyEntry(every)
	e.Name, e.Queue, e.Retention = name, "default", time.Minute
	e.Symbols = make([]string, n)
	for i := range e.Symbols {
		e.Symbols[i] = fmt.Sprintf("S%04d", i)
	}
	return e
}

// TestFireReplicas: three replicas firing one slot at once enqueue each
// symbol once; the others count the rest as already enqueued.
func TestFireReplicas(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("rep", 10*time.Second, 500)
	slot := e.RawPrev(time.Now())

	var wg sync.WaitGroup
	counts := make([]Counts, 3)
	start := time.Now()
	for i := range counts {
		r := w.replica(nil, SystemClock{})
		wg.Go(func() {
			c, err := r.Fire(t.Context(), e, slot)
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
			counts[i] = c
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	enqueued := 0
	for i, c := range counts {
		if c.Enqueued+c.AlreadyEnqueued != 500 || c.Errors != 0 {
			t.Errorf("replica %d: %+v, want enqueued + already_enqueued = 500", i, c)
		}
		enqueued += c.Enqueued
	}
	if enqueued != 500 {
		t.Errorf("replicas enqueued %d tasks together, want 500", enqueued)
	}
	ids := w.pendingIDs("default")
	if len(ids) != 500 {
		t.Fatalf("%d pending tasks, want 500", len(ids))
	}
	ti := ids[TaskID("rep", "S0042", slot)]
	if ti == nil {
		t.Fatalf("no task %s", TaskID("rep", "S0042", slot))
	}
	if ti.Retention != time.Minute || string(ti.Payload) != `{"symbol":"S0042"}` {
		t.Errorf("task: retention %s, payload %s", ti.Retention, ti.Payload)
	}
	if elapsed > 2*time.Second {
		t.Errorf("three replicas took %s for a 500-symbol slot", elapsed)
	}
	t.Logf("500-symbol slot on 3 replicas: %s", elapsed)
}

// TestFireAfterTasksGone: once a slot's tasks completed and asynq freed
// their ids, a late replica still does not enqueue the slot again.
func TestFireAfterTasksGone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("gone", 10*time.Second, 20)
	slot := e.RawPrev(time.Now())
	if c, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot); err != nil || c.Enqueued != 20 {
		t.Fatalf("first firing: %+v, %v", c, err)
	}
	if _, err := w.inspector.DeleteAllPendingTasks("default"); err != nil {
		t.Fatal(err)
	}
	c, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot)
	if err != nil || c != (Counts{AlreadyEnqueued: 20}) {
		t.Errorf("late replica: %+v, %v; want all 20 already enqueued", c, err)
	}
	if n := len(w.pendingIDs("default")); n != 0 {
		t.Errorf("%d tasks enqueued again", n)
	}
}

// TestFireDeadline: each task carries the entry's next slot as deadline.
func TestFireDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("dl", 4*time.Second, 1)
	slot := e.RawPrev(time.Now())
	if _, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot); err != nil {
		t.Fatal(err)
	}
	ti, err := w.inspector.GetTaskInfo("default", TaskID("dl", "S0000", slot))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := tasks.Deadline(asynq.NewTaskWithHeaders(ti.Type, ti.Payload, ti.Headers))
	if !ok || !got.Equal(slot.Add(4*time.Second)) {
		t.Errorf("deadline = %s, %v; want %s", got, ok, slot.Add(4*time.Second))
	}
}

// TestFireDue drives the runner's decision with explicit times: a slot is
// fired once, up to one interval late; slots more than one interval late
// are skipped and counted once, by whichever replica fires next.
func TestFireDue(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("due", 2*time.Second, 3)
	cfg := &Config{Entries: []*Entry{e}}
	base := e.RawPrev(time.Now())
	at := func(d time.Duration) time.Time { return base.Add(d) }

	obsA, obsB := &recorder{}, &recorder{}
	a, b := w.replica(obsA, SystemClock{}), w.replica(obsB, SystemClock{})
	firedA, firedB := map[string]time.Time{}, map[string]time.Time{}
	steps := []struct {
		r     *Runner
		fired map[string]time.Time
		now   time.Duration
	}{
		{a, firedA, 500 * time.Millisecond},  // slot 0, half a second late
		{a, firedA, 1900 * time.Millisecond}, // slot 0 again: nothing
		{b, firedB, 1900 * time.Millisecond}, // B's first look: slot 0 already in
		{a, firedA, 2100 * time.Millisecond}, // slot 1 on time
		{b, firedB, 9 * time.Second},         // down until slot 4: 2 and 3 skipped
		{a, firedA, 9500 * time.Millisecond}, // slot 4 already in
	}
	for _, s := range steps {
		s.r.fireDue(t.Context(), cfg, at(s.now), s.fired)
	}
	wantA := []Counts{{Enqueued: 3}, {Enqueued: 3}, {AlreadyEnqueued: 3}}
	wantB := []Counts{{AlreadyEnqueued: 3}, {Enqueued: 3, Skipped: 2}}
	if got := obsA.all(); fmt.Sprint(got) != fmt.Sprint(wantA) {
		t.Errorf("replica A fired %v, want %v", got, wantA)
	}
	if got := obsB.all(); fmt.Sprint(got) != fmt.Sprint(wantB) {
		t.Errorf("replica B fired %v, want %v", got, wantB)
	}
	if n := len(w.pendingIDs("default")); n != 9 {
		t.Errorf("%d tasks, want 9 (3 slots of 3)", n)
	}
}

// fakeClock jumps to whatever time it is asked to wait for.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestRunReloadAndStop runs the loop on a clock that jumps from slot to
// slot: every slot fires once, a reload takes effect, and Run returns once
// its context is done.
func TestRunReloadAndStop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("run", time.Second, 2)
	clock := &fakeClock{now: e.RawPrev(time.Now()).Add(100 * time.Millisecond)}
	obs := &recorder{}
	r := w.replica(obs, clock)

	ctx, cancel := context.WithCancel(t.Context())
	reload := make(chan *Config)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, &Config{Entries: []*Entry{e}}, reload) }()

	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(obs.all()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d firings after 10s, want %d", len(obs.all()), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(3)
	bigger := symbolEntry("run", time.Second, 5)
	reload <- &Config{Entries: []*Entry{bigger}}
	waitFor(len(obs.all()) + 2)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	all := obs.all()
	if all[0] != (Counts{Enqueued: 2}) || all[len(all)-1] != (Counts{Enqueued: 5}) {
		t.Errorf("firings %v: want 2 tasks each before the reload, 5 after", all)
	}
	for i, c := range all {
		if c.Skipped != 0 || c.Errors != 0 || c.AlreadyEnqueued != 0 {
			t.Errorf("firing %d: %+v", i, c)
		}
	}
}
