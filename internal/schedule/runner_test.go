package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	names  []string
}

func (r *recorder) ObserveFiring(name string, c Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = append(r.counts, c)
	r.names = append(r.names, name)
}

// of returns the firings of the entry name.
func (r *recorder) of(name string) []Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Counts
	for i, n := range r.names {
		if n == name {
			out = append(out, r.counts[i])
		}
	}
	return out
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
	base := e.RawPrev(time.Now())
	at := func(d time.Duration) time.Time { return base.Add(d) }

	obsA, obsB := &recorder{}, &recorder{}
	a, b := w.replica(obsA, SystemClock{}), w.replica(obsB, SystemClock{})
	var lastA, lastB time.Time
	steps := []struct {
		r    *Runner
		last *time.Time
		now  time.Duration
	}{
		{a, &lastA, 500 * time.Millisecond},  // slot 0, half a second late
		{a, &lastA, 1900 * time.Millisecond}, // slot 0 again: nothing
		{b, &lastB, 1900 * time.Millisecond}, // B's first look: slot 0 already in
		{a, &lastA, 2100 * time.Millisecond}, // slot 1 on time
		{b, &lastB, 9 * time.Second},         // down until slot 4: 2 and 3 skipped
		{a, &lastA, 9500 * time.Millisecond}, // slot 4 already in
	}
	for _, s := range steps {
		*s.last = s.r.fireDue(t.Context(), e, at(s.now), *s.last)
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

// faultHook makes a replica's Redis commands whose arguments contain match
// fail (the first fail of them) or take delay longer: a Redis blip or a
// slow link, on the real Redis.
type faultHook struct {
	match string
	fail  atomic.Int64
	delay time.Duration
}

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, a := range cmd.Args() {
			if s, ok := a.(string); !ok || !strings.Contains(s, h.match) {
				continue
			}
			if h.fail.Add(-1) >= 0 {
				err := errors.New("injected redis blip")
				cmd.SetErr(err)
				return err
			}
			time.Sleep(h.delay)
			break
		}
		return next(ctx, cmd)
	}
}

func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// faulty returns a replica whose commands touching match go through h.
func (w *world) faulty(obs Observer, h *faultHook) *Runner {
	w.t.Helper()
	rdb := w.opt.MakeRedisClient().(*redis.Client)
	rdb.AddHook(h)
	w.t.Cleanup(func() { _ = rdb.Close() })
	return &Runner{Client: asynq.NewClientFromRedisClient(rdb), Redis: rdb, Log: zerolog.Nop(), Clock: SystemClock{}, Observer: obs}
}

// TestFireRetries: enqueues that fail for a moment are tried again while
// the slot is current, and the marker is written once all are in.
func TestFireRetries(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("blip", time.Hour, 20)
	slot := e.RawPrev(time.Now())
	h := &faultHook{match: "sched:blip:"}
	h.fail.Store(30) // the whole first attempt and half the second
	c, err := w.faulty(nil, h).Fire(t.Context(), e, slot)
	if err != nil || c != (Counts{Enqueued: 20}) {
		t.Fatalf("Fire = %+v, %v; want all 20 enqueued after retries", c, err)
	}
	if n := len(w.pendingIDs("default")); n != 20 {
		t.Errorf("%d tasks, want 20", n)
	}
	rdb := w.opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	if n, err := rdb.Exists(t.Context(), markerKey("blip", slot)).Result(); err != nil || n != 1 {
		t.Errorf("marker: %d, %v; want it set", n, err)
	}
}

// TestFireGivesUp: a firing that cannot get its tasks in gives up when its
// time is over, counts the missing tasks as errors and leaves no marker,
// so another replica still fills the slot.
func TestFireGivesUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := symbolEntry("down", time.Hour, 20)
	slot := e.RawPrev(time.Now())
	h := &faultHook{match: "sched:down:"}
	h.fail.Store(1 << 40)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	c, err := w.faulty(nil, h).Fire(ctx, e, slot)
	if !errors.Is(err, ErrFire) || c != (Counts{Errors: 20}) {
		t.Fatalf("Fire = %+v, %v; want 20 errors and ErrFire", c, err)
	}
	c, err = w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot)
	if err != nil || c != (Counts{Enqueued: 20}) {
		t.Errorf("healthy replica: %+v, %v; want all 20 enqueued", c, err)
	}
}

// TestFireMarkerOutlivesRetention: the marker of a daily cron slot with a
// 5m retention is still there two hours after the slot, when a replica
// starting then takes the slot as current (its misfire_grace is a day),
// and until the next day's slot.
func TestFireMarkerOutlivesRetention(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ago := time.Now().UTC().Add(-2 * time.Hour)
	e := cronEntry(t, fmt.Sprintf("%d %d * * *", ago.Minute(), ago.Hour()), time.UTC, nil)
	e.Name, e.Queue, e.Retention, e.MisfireGrace = "daily", "default", 5*time.Minute, 24*time.Hour
	slot := e.RawPrev(time.Now())
	if c, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot); err != nil || c.Enqueued != 1 {
		t.Fatalf("first firing: %+v, %v", c, err)
	}
	if _, err := w.inspector.DeleteAllPendingTasks("default"); err != nil { // as if completed and expired
		t.Fatal(err)
	}
	rdb := w.opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	ttl, err := rdb.TTL(t.Context(), markerKey("daily", slot)).Result()
	if want := time.Until(e.RawNext(slot)); err != nil || ttl < want {
		t.Errorf("marker TTL %s, %v; want at least %s (until the next slot)", ttl, err, want)
	}
	obs := &recorder{}
	late := w.replica(obs, SystemClock{})
	if got := late.fireDue(t.Context(), e, time.Now(), time.Time{}); !got.Equal(slot) {
		t.Errorf("late replica handled %s, want %s", got, slot)
	}
	if got := obs.all(); len(got) != 1 || got[0] != (Counts{AlreadyEnqueued: 1}) {
		t.Errorf("late replica fired %v, want one firing already enqueued", got)
	}
}

// runFor runs r on cfg for d of real time and returns once Run has.
func runFor(t *testing.T, r *Runner, cfg *Config, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := r.Run(ctx, cfg, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunSlowEntry: an entry whose firings take two seconds does not make
// an `every: 1s` entry late or skip slots.
func TestRunSlowEntry(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	fast, slow := symbolEntry("fast", time.Second, 1), symbolEntry("slow", 3*time.Second, 100)
	obs := &recorder{}
	r := w.faulty(obs, &faultHook{match: "sched:slow:", delay: 40 * time.Millisecond})
	r.Workers = 2 // 100 enqueues of 40 ms, two at a time: 2 s a firing
	runFor(t, r, &Config{Entries: []*Entry{slow, fast}}, 5*time.Second)

	got := obs.of("fast")
	if len(got) < 4 {
		t.Errorf("fast fired %d times in 5 s, want at least 4: %v", len(got), got)
	}
	for i, c := range got {
		if c != (Counts{Enqueued: 1}) {
			t.Errorf("fast firing %d: %+v, want 1 enqueued, none skipped", i, c)
		}
	}
	if len(obs.of("slow")) == 0 {
		t.Error("slow never fired")
	}
}

// brokenMarket has no sessions: its calendar ends before every slot.
type brokenMarket struct{}

func (brokenMarket) Session(time.Time) (time.Time, time.Time, error) {
	return time.Time{}, time.Time{}, errors.New("beyond the calendar")
}

// TestRunEntryWithoutSlot: an entry without a next slot turns itself off;
// the other entries fire on time.
func TestRunEntryWithoutSlot(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	evening := cronEntry(t, "0 17 * * *", newYork, brokenMarket{})
	evening.Name = "evening"
	obs := &recorder{}
	runFor(t, w.replica(obs, SystemClock{}), &Config{Entries: []*Entry{symbolEntry("fast", time.Second, 1), evening}}, 3500*time.Millisecond)
	if got := obs.of("fast"); len(got) < 3 {
		t.Errorf("fast fired %d times in 3.5 s, want at least 3", len(got))
	}
}

// TestRunReloadKeepsUnchanged: a reload keeps the loop of an unchanged
// entry, replaces that of a changed one without firing its current slot
// again, and an empty config stops every loop.
func TestRunReloadKeepsUnchanged(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	obs := &recorder{}
	r := w.replica(obs, SystemClock{})
	// Hourly, with a grace of the hour: the current slot fires at start.
	hourly := func(name string, n int) *Entry {
		e := symbolEntry(name, time.Hour, n)
		e.MisfireGrace = time.Hour
		return e
	}
	loops := map[string]*entryLoop{}
	r.apply(t.Context(), loops, &Config{Entries: []*Entry{hourly("keep", 1), hourly("change", 1)}})
	deadline := time.Now().Add(10 * time.Second)
	for len(obs.all()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("firings %v after 10s, want 2", obs.all())
		}
		time.Sleep(time.Millisecond)
	}
	keep := loops["keep"]
	changed := hourly("change", 2)
	r.apply(t.Context(), loops, &Config{Entries: []*Entry{hourly("keep", 1), changed}})
	if loops["keep"] != keep {
		t.Error("the unchanged entry's loop was replaced")
	}
	if loops["change"].entry != changed {
		t.Error("the changed entry's loop was not replaced")
	}
	time.Sleep(200 * time.Millisecond)
	if got := obs.all(); len(got) != 2 {
		t.Errorf("firings %v, want the 2 before the reload only", got)
	}
	r.apply(t.Context(), loops, &Config{})
	if len(loops) != 0 {
		t.Errorf("%d loops left", len(loops))
	}
	select {
	case <-keep.done:
	default:
		t.Error("a loop runs on after an empty config")
	}
}

// logBuffer collects a logger's JSON lines from any goroutine.
type logBuffer struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (b *logBuffer) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, m)
	return len(p), nil
}

// with returns the lines whose message is msg.
func (b *logBuffer) with(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, m := range b.lines {
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestRunStartUp starts a runner (on a clock that jumps from slot to
// slot) at a time after a daily slot: 30 s after, it fires the slot; 21.6 h
// after, it leaves it, logs it as skipped and counts it at the next day's
// firing; when a replica had fired the slot, it logs that at debug level
// and counts nothing.
func TestRunStartUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tests := []struct {
		name     string
		after    time.Duration // from the day's slot to the start
		firedDay []int         // days (-1: the day before, 0: the day of the slot) fired before the start
		first    int           // the day of the runner's first firing
		want     Counts        // its counts
		logged   string        // the message logged about the day's slot, if any
		level    string
	}{
		{"start-30s", 30 * time.Second, nil, 0, Counts{Enqueued: 3}, "", ""},
		{"start-late", 21*time.Hour + 37*time.Minute, []int{-1}, 1, Counts{Enqueued: 3, Skipped: 1},
			"schedule: slot skipped: more than misfire_grace late", "info"},
		{"start-late-fired", 21*time.Hour + 37*time.Minute, []int{-1, 0}, 1, Counts{Enqueued: 3},
			"schedule: slot more than misfire_grace late, but a replica already fired it", "debug"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := cronEntry(t, "0 17 * * *", mustLocation("Europe/London"), nil)
			e.Name, e.Queue, e.Symbols = tc.name, "default", []string{"BP", "SHEL", "HSBA"}
			day := func(n int) time.Time { return e.RawPrev(time.Now()).AddDate(0, 0, n) }
			for _, d := range tc.firedDay {
				if c, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, day(d)); err != nil || c.Enqueued != 3 {
					t.Fatalf("firing day %d before the start: %+v, %v", d, c, err)
				}
			}

			logs := &logBuffer{}
			obs := &recorder{}
			r := w.replica(obs, &fakeClock{now: day(0).Add(tc.after)})
			r.Log = zerolog.New(logs).Level(zerolog.DebugLevel)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, &Config{Entries: []*Entry{e}}, nil) }()
			deadline := time.Now().Add(10 * time.Second)
			for len(obs.all()) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no firing after 10s")
				}
				time.Sleep(time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}

			if got := obs.all()[0]; got != tc.want {
				t.Errorf("first firing %+v, want %+v", got, tc.want)
			}
			ids := w.pendingIDs("default")
			if ids[TaskID(tc.name, "BP", day(tc.first))] == nil {
				t.Errorf("no task for day %d's slot %s", tc.first, day(tc.first))
			}
			if fired := slices.Contains(tc.firedDay, 0); (ids[TaskID(tc.name, "BP", day(0))] != nil) != (fired || tc.first == 0) {
				t.Errorf("day 0's slot %s: task %v, want one only if fired in time", day(0), ids[TaskID(tc.name, "BP", day(0))] != nil)
			}
			missed := logs.with(tc.logged)
			if tc.logged == "" {
				missed = append(logs.with("schedule: slot skipped: more than misfire_grace late"),
					logs.with("schedule: slot more than misfire_grace late, but a replica already fired it")...)
				if len(missed) != 0 {
					t.Errorf("logged %v, want no missed slot", missed)
				}
				return
			}
			if len(missed) != 1 {
				t.Fatalf("%d lines %q, want 1", len(missed), tc.logged)
			}
			m := missed[0]
			if m["level"] != tc.level || m["slot_unix"] != float64(day(0).Unix()) ||
				m["late_ms"] != float64(tc.after.Milliseconds()) || m["misfire_grace_ms"] != 60000.0 {
				t.Errorf("log line %v: want level %s, slot_unix %d, late_ms %d, misfire_grace_ms 60000",
					m, tc.level, day(0).Unix(), tc.after.Milliseconds())
			}
		})
	}
}
