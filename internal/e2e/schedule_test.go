package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
)

// firing is one "schedule fired" log line of `producer schedule`.
type firing struct {
	Msg      string `json:"message"`
	Schedule string `json:"schedule"`
	SlotUnix int64  `json:"slot_unix"`
	Enqueued int    `json:"enqueued"`
	Already  int    `json:"already_enqueued"`
	Skipped  int    `json:"skipped"`
	Errors   int    `json:"errors"`
}

// firings parses the firing lines in a producer's logs.
func firings(logs string) []firing {
	var out []firing
	for _, line := range strings.Split(logs, "\n") {
		var f firing
		if json.Unmarshal([]byte(line), &f) == nil && f.Msg == "schedule fired" {
			out = append(out, f)
		}
	}
	return out
}

// writeSchedule writes a schedule file into a fresh directory and returns
// its path.
func writeSchedule(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedule.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFirings waits until the producers have logged at least n firings in
// total.
func waitFirings(t *testing.T, n int, timeout time.Duration, procs ...*proc) []firing {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var all []firing
		for _, p := range procs {
			all = append(all, firings(p.logs.String())...)
		}
		if len(all) >= n {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d firings logged after %s, want %d", len(all), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScheduleReplicas runs three `producer schedule` replicas on one file
// with an `every: 2s` entry of 50 symbols, SIGKILLs and restarts two of
// them, then has all three down for a while. No worker runs, so every task
// enqueued stays pending: each slot must have all 50 tasks or none, the
// empty ones lie in the all-down period and are exactly the slots the logs
// report as skipped. TICKERQ_E2E_SCHEDULE_FULL=1 runs it for 60 s instead
// of 20 s.
func TestScheduleReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	total, down := 20*time.Second, 7*time.Second
	if os.Getenv("TICKERQ_E2E_SCHEDULE_FULL") != "" {
		total, down = 60*time.Second, 15*time.Second
	}
	const n, every = 50, 2 * time.Second
	cfg := writeSchedule(t, "schedules:\n  - name: rep50\n    every: 2s\n    symbols: ["+strings.Join(symbols("R", n), ", ")+"]\n")

	var all []*proc
	start := func() *proc {
		p := e.start("producer", nil, "schedule", "--config", cfg)
		all = append(all, p)
		return p
	}
	at := func(f float64) time.Duration { return time.Duration(f * float64(total)) }
	begin := time.Now()
	// Kills land between slots: a replica killed while it enqueues leaves
	// the rest of its slot to the others, but with none left the slot
	// would stay short.
	sleepUntil := func(d time.Duration) {
		t := begin.Add(d)
		mid := t.Truncate(every).Add(every / 2)
		if mid.Before(t) {
			mid = mid.Add(every)
		}
		time.Sleep(time.Until(mid))
	}

	r := []*proc{start(), start(), start()}
	sleepUntil(at(0.15))
	r[0].kill() // SIGKILL
	sleepUntil(at(0.25))
	r[0] = start()
	sleepUntil(at(0.35))
	r[1].kill()
	sleepUntil(at(0.42))
	r[1] = start()
	sleepUntil(at(0.5))
	for _, p := range r {
		p.kill()
	}
	downFrom := time.Now()
	time.Sleep(down)
	downTo := time.Now()
	r = []*proc{start(), start(), start()}
	sleepUntil(total)
	for i, p := range r {
		if code := p.stop(t, 10*time.Second); code != 0 {
			t.Errorf("replica %d exited %d on SIGTERM, want 0", i, code)
		}
	}

	// Count the pending task ids per slot.
	insp := asynq.NewInspector(testenv.RedisClientOpt(t, e.redis))
	defer insp.Close()
	perSlot := map[int64]map[string]bool{}
	for page := 1; ; page++ {
		list, err := insp.ListPendingTasks("default", asynq.PageSize(1000), asynq.Page(page))
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range list {
			parts := strings.Split(ti.ID, ":") // sched:NAME:SYMBOL:UNIX
			unix, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
			if len(parts) != 4 || parts[0] != "sched" || parts[1] != "rep50" || err != nil {
				t.Fatalf("task id %q: want sched:rep50:SYMBOL:UNIX", ti.ID)
			}
			if perSlot[unix] == nil {
				perSlot[unix] = map[string]bool{}
			}
			if perSlot[unix][parts[2]] {
				t.Errorf("symbol %s enqueued twice for slot %d", parts[2], unix)
			}
			perSlot[unix][parts[2]] = true
		}
		if len(list) < 1000 {
			break
		}
	}
	var slots []int64
	for s := range perSlot {
		slots = append(slots, s)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	if len(slots) == 0 {
		t.Fatal("no tasks enqueued")
	}

	var enqueued, skippedLogged int
	for _, p := range all {
		for _, f := range firings(p.logs.String()) {
			enqueued += f.Enqueued
			skippedLogged += f.Skipped
			if f.Enqueued+f.Already != n || f.Errors != 0 {
				t.Errorf("firing %+v: want enqueued + already_enqueued = %d and no errors", f, n)
			}
		}
	}

	step := int64(every / time.Second)
	full, empty := 0, 0
	var emptySlots []string
	for s := slots[0]; s <= slots[len(slots)-1]; s += step {
		got := len(perSlot[s])
		switch got {
		case n:
			full++
		case 0:
			empty++
			emptySlots = append(emptySlots, strconv.FormatInt(s, 10))
			slot := time.Unix(s, 0)
			// A slot is missed only if no replica ran during all of its window.
			if slot.Before(downFrom.Add(-time.Second)) || slot.After(downTo) {
				t.Errorf("slot %d (%s) has no tasks but replicas were up (down %s to %s)", s, slot.Format(time.RFC3339), downFrom.Format(time.RFC3339), downTo.Format(time.RFC3339))
			}
		default:
			t.Errorf("slot %d has %d tasks, want %d or 0", s, got, n)
		}
	}
	if empty == 0 {
		t.Errorf("no slot skipped while all replicas were down for %s", down)
	}
	if skippedLogged != empty {
		t.Errorf("logs report %d skipped slots, the queue has %d empty slots (%s)", skippedLogged, empty, strings.Join(emptySlots, " "))
	}
	if enqueued != full*n {
		t.Errorf("logs report %d tasks enqueued, the queue holds %d", enqueued, full*n)
	}
	t.Logf("%s run: %d slots from %d to %d: %d with all %d tasks once, %d skipped (logged skipped: %d); %d tasks; %d replica processes",
		total, len(slots)+empty, slots[0], slots[len(slots)-1], full, n, empty, skippedLogged, full*n, len(all))
}

// TestScheduleStaleDropped: tasks of a firing whose deadline (the next
// slot) has passed are dropped by a worker started afterwards: none is
// fetched, retried or archived.
func TestScheduleStaleDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := writeSchedule(t, "schedules:\n  - name: stale\n    every: 2s\n    symbols: [AAPL, MSFT, GOOG]\n")
	p := e.start("producer", nil, "schedule", "--config", cfg)
	f := waitFirings(t, 1, 10*time.Second, p)[0]
	if code := p.stop(t, 10*time.Second); code != 0 {
		t.Fatalf("producer schedule exited %d on SIGTERM, want 0", code)
	}
	if f.Enqueued != 3 {
		t.Fatalf("first firing %+v: want 3 enqueued", f)
	}
	deadline := time.Unix(f.SlotUnix, 0).Add(2 * time.Second)
	time.Sleep(time.Until(deadline) + 200*time.Millisecond)

	quoteURL, _ := e.startQuoteserver()
	w, _ := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL})
	e.producer(nil, "wait", "--timeout", "20s")
	s := e.stats()["default"]
	if s.Retry != 0 || s.Archived != 0 || s.Pending != 0 || s.Completed != 0 {
		t.Errorf("stats %+v: want nothing pending, retried, archived or completed", s)
	}
	if rows, _ := e.rows(); rows != 0 {
		t.Errorf("%d quotes stored for stale tasks", rows)
	}
	stale := 0
	for _, line := range strings.Split(w.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "job" && m["outcome"] == "stale" {
			stale++
		}
	}
	if stale != 3 {
		t.Errorf("worker logged %d stale jobs, want 3", stale)
	}
}

// TestScheduleReload: a bad edit is refused and the running schedule kept;
// a good one takes effect on the next slot.
func TestScheduleReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := writeSchedule(t, "schedules:\n  - name: grow\n    every: 1s\n    symbols: [AAPL]\n")
	p := e.start("producer", nil, "schedule", "--config", cfg)
	waitFirings(t, 1, 10*time.Second, p)

	if err := os.WriteFile(cfg, []byte("schedules:\n  - name: grow\n    every: soon\n    symbols: [AAPL]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), "reload refused") {
		if time.Now().After(deadline) {
			t.Fatal("bad edit not reported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := len(firings(p.logs.String()))
	waitFirings(t, before+1, 10*time.Second, p) // still firing

	// Editors replace files: write elsewhere, rename over.
	next := cfg + ".tmp"
	if err := os.WriteFile(next, []byte("schedules:\n  - name: grow\n    every: 1s\n    symbols: [AAPL, MSFT, GOOG]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, cfg); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		fs := firings(p.logs.String())
		if last := fs[len(fs)-1]; last.Enqueued+last.Already == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload not applied; last firings: %+v", fs[max(0, len(fs)-3):])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := p.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d on SIGTERM, want 0", code)
	}
}

// TestScheduleDryRunMarket: an XNYS minute schedule from the Friday before
// Martin Luther King Jr. Day 2027 fires 09:30-15:59 Friday, not on the
// weekend or the holiday, again from 09:30 Tuesday; on the early-close day
// after Thanksgiving 2026 it stops at 13:00. No Redis is needed.
func TestScheduleDryRunMarket(t *testing.T) {
	t.Parallel()
	e := &env{t: t, vars: []string{"REDIS_URL=redis://127.0.0.1:1/0", "LOG_FORMAT=json"}}
	cfg := writeSchedule(t, "timezone: America/New_York\nschedules:\n  - name: us-minute\n    cron: \"* * * * *\"\n    market: XNYS\n    symbols: [AAPL, MSFT]\n")

	start := time.Now()
	r := e.run("producer", nil, nil, "schedule", "--config", cfg, "--dry-run", "--from", "2027-01-15T09:00:00-05:00", "--count", "392")
	elapsed := time.Since(start)
	if r.code != 0 {
		t.Fatalf("dry-run: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := map[int]string{
		0:   "2027-01-15T09:30:00-05:00\tus-minute\t2",
		389: "2027-01-15T15:59:00-05:00\tus-minute\t2",
		390: "2027-01-19T09:30:00-05:00\tus-minute\t2",
	}
	if len(lines) != 392 {
		t.Fatalf("%d lines, want 392", len(lines))
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	if elapsed > 2*time.Second {
		t.Errorf("dry-run took %s", elapsed)
	}

	r = e.run("producer", nil, nil, "schedule", "--config", cfg, "--dry-run", "--from", "2026-11-27T12:58:00-05:00", "--count", "3", "--json")
	if r.code != 0 {
		t.Fatalf("dry-run --json: exit %d: %s", r.code, r.stderr)
	}
	wantJSON := `{"at":"2026-11-27T12:58:00-05:00","schedule":"us-minute","symbols":["AAPL","MSFT"]}
{"at":"2026-11-27T12:59:00-05:00","schedule":"us-minute","symbols":["AAPL","MSFT"]}
{"at":"2026-11-30T09:30:00-05:00","schedule":"us-minute","symbols":["AAPL","MSFT"]}
`
	if r.stdout != wantJSON {
		t.Errorf("dry-run --json:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
}

// TestScheduleRefusesBadFile: an invalid file at start exits 2 naming the
// entry and the field.
func TestScheduleRefusesBadFile(t *testing.T) {
	t.Parallel()
	e := &env{t: t, vars: []string{"LOG_FORMAT=json"}}
	tests := []struct{ yaml, want string }{
		{"schedules:\n  - name: us-minute\n    cron: \"* * *\"\n    symbols: [A]\n", `schedule "us-minute": cron: `},
		{"schedules:\n  - name: us-minute\n    every: 1s\n    symbols: [A]\n    color: red\n", `schedule "us-minute": color: unknown field (line 5)`},
		{"schedules:\n  - name: us-minute\n    every: [1]\n    symbols: [A]\n", `schedule "us-minute": every: want a single value, not a list or mapping (line 3)`},
		{"schedules:\n  - name: fast\n    every: 2s\n    symbols: [A]\n  - name: evening\n    cron: \"0 17 * * *\"\n    market: XNYS\n    timezone: America/New_York\n    symbols: [B]\n",
			`schedule "evening": cron: "0 17 * * *" never falls inside an XNYS session`},
		{"schedules:\n  - name: a\n    every: 1s\n    market: XLON\n    symbols: [A]\n", `schedule "a": market: `},
	}
	for i, tc := range tests {
		cfg := writeSchedule(t, tc.yaml)
		for _, args := range [][]string{{"schedule", "--config", cfg}, {"schedule", "--config", cfg, "--dry-run"}} {
			r := e.run("producer", nil, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("case %d %v: exit %d, stderr %q; want 2 and one line containing %q", i, args[3:], r.code, r.stderr, tc.want)
			}
		}
	}
	good := writeSchedule(t, "schedules:\n  - name: a\n    every: 1s\n    symbols: [A]\n")
	if r := e.run("producer", nil, nil, "schedule", "--config", good, "--count", "3"); r.code != 2 {
		t.Errorf("--count without --dry-run: exit %d, want 2", r.code)
	}
}
