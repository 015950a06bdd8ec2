package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

// The chaos suite (docs/reliability.md): jobs through several worker
// processes while a driver injects every fault of issue 8 on a schedule,
// then an account of every enqueued task id.
//
// Short form by default (it runs in `make test`); TICKERQ_CHAOS_JOBS=100000
// (`make chaos`) is the full form.

const (
	// chaosShortJobs is the short form's size: a few thousand jobs keep it
	// inside CI's budget; the wall time is mostly asynq's recovery of the
	// orphans of a kill -9 (60–120 s, README).
	chaosShortJobs = 3000
	// chaosCycle is one round of every fault; the full form runs one round
	// per chaosJobsPerCycle jobs.
	chaosCycle        = 45 * time.Second
	chaosJobsPerCycle = 10000
	// chaosUnknown symbols are answered "unknown" by the quote API: they must
	// end archived, with no row, however often faults made them fail first.
	chaosUnknown = 10
	// chaosMaxRetry is generous on purpose: every fault here is transient,
	// and each one can cost a task a retry (an orphan of a kill -9 is counted
	// as a failure, a 500 is one), so a task hit by several faults must not
	// run out of retries and be archived: that would be reported as "archived
	// wrongly". Retry delays double from 1 s and cap at 10 min, so 1000 is
	// never reached within a test.
	chaosMaxRetry = 1000
	// chaosWorkers regular workers, each at chaosConcurrency.
	chaosWorkers     = 3
	chaosConcurrency = 20
	chaosIDPrefix    = "chaos"
)

func TestChaos(t *testing.T) {
	t.Parallel()
	jobs := chaosShortJobs
	if v := os.Getenv("TICKERQ_CHAOS_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TICKERQ_CHAOS_JOBS=%q: want a positive number of jobs", v)
		}
		jobs = n
	}
	cycles := max(1, jobs/chaosJobsPerCycle)
	faultWindow := time.Duration(cycles) * chaosCycle
	// The quote API's latency paces the run so that jobs flow until about
	// the last cycle: the faults (outages, retries, orphans) cut the
	// throughput to about 40% of what the workers' slots give when nothing
	// fails (measured: 42 326 of 100 000 rows by the end of the faults with
	// no such factor), so the slots alone would take 0.4 × faultWindow.
	latency := time.Duration(int64(faultWindow) * chaosWorkers * chaosConcurrency * 4 / 10 / int64(jobs))
	latency = min(max(latency, 20*time.Millisecond), 2*time.Second)

	c := newChaos(t, jobs, latency)
	t.Logf("chaos: %d jobs + %d unknown symbols, %d fault cycle(s) of %s, quote latency %s, %d workers × %d",
		jobs, chaosUnknown, cycles, chaosCycle, latency, chaosWorkers, chaosConcurrency)

	start := time.Now()
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		c.produce(start, faultWindow/2)
	}()
	c.drive(start, cycles)
	faultsEnd := time.Now()
	<-producerDone
	if t.Failed() {
		t.FailNow()
	}

	drainTimeout := 4*time.Minute + time.Duration(jobs)*6*time.Millisecond
	c.drain(drainTimeout)
	drained := time.Now()
	acc := c.account()
	wall := time.Since(start)

	t.Logf("producer: %d runs, %d symbols reported failed or unknown and re-run, %d re-run symbols reported already enqueued",
		c.prodRuns, c.prodReRun, c.prodAlready)
	t.Logf("drained %s after the last fault", drained.Sub(faultsEnd).Round(time.Second))
	up := c.upstream()
	t.Logf("upstream quote requests by status %v (canceled %d)", up.ByStatus, up.Canceled)
	if q, ok := c.e.stats()["default"]; ok {
		t.Logf("asynq default queue: processed %d, failed %d, completed %d, archived %d", q.Processed, q.Failed, q.Completed, q.Archived)
	}
	t.Logf("\n%s", acc.table(jobs, c.faults, int64(up.Requests)-int64(jobs+chaosUnknown), wall))

	if acc.lost != 0 || acc.duplicated != 0 || acc.wronglyArchived != 0 || len(acc.problems) != 0 ||
		acc.ok+acc.okGone != jobs || acc.unknownArchived != chaosUnknown || acc.strayRows != 0 {
		t.Errorf("chaos account is not clean: %+v", acc.counts())
		for i, p := range acc.problems {
			if i == 50 {
				t.Errorf("… and %d more", len(acc.problems)-50)
				break
			}
			t.Error(p)
		}
	}
	if c.selfExits > 0 {
		t.Errorf("%d worker exits that no fault caused (restarted, as an orchestrator would; see the logs above)", c.selfExits)
	}
}

// chaos is the world of TestChaos: its own Redis server, a proxy in front
// of Postgres and one in front of the quote API, the workers, the counters.
type chaos struct {
	t       *testing.T
	e       *env
	jobs    int
	latency time.Duration
	good    []string
	unknown []string

	redis   *testenv.RedisServer
	pgProxy *testenv.Proxy
	qProxy  *testenv.Proxy
	quote   *chaosQuote // the API the workers use, behind qProxy
	slowQ   *chaosQuote // a slow API for the worker SIGTERMed past its timeout

	workerEnv []string
	workers   []*proc
	slow      *proc

	faults    chaosFaults
	selfExits int

	// written by the producer goroutine, read after it ends
	prodRuns, prodReRun, prodAlready int
	// enqueuing is set while a producer run is under way.
	enqueuing atomic.Bool
}

// chaosFaults counts each fault injected.
type chaosFaults struct {
	kill9, sigterm, sigtermCut, redisKill, redisKillMidEnqueue, pgCut, pgBlackhole, quoteErrors, quoteDown, quoteSlow int
	blackholeFor                                                                                                      time.Duration
}

func newChaos(t *testing.T, jobs int, latency time.Duration) *chaos {
	t.Helper()
	e := newEnv(t)
	c := &chaos{t: t, e: e, jobs: jobs, latency: latency}
	c.good = symbols("C", jobs)
	for i := range chaosUnknown {
		c.unknown = append(c.unknown, fmt.Sprintf("UNK%03d", i))
	}

	// Redis of the test's own, persisted with an append-only file. A kill -9
	// of the process loses only what Redis had not yet written to the file
	// (fsync matters only when the machine dies): with the default
	// appendfsync everysec it writes before replying, unless a slow
	// background fsync made it postpone the write, for at most 2 s.
	c.redis = testenv.StartRedisServer(t, "--appendonly", "yes")
	e.setVar("REDIS_URL", c.redis.URL(0))

	var dbURL string
	c.pgProxy, dbURL = testenv.ProxyURL(t, e.db.URL)

	unknown := strings.Join(c.unknown, ",")
	c.quote = &chaosQuote{e: e, addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		base: []string{"--unknown", unknown, "--seed", "8"}}
	c.quote.start("--latency", latency.String())
	c.qProxy = testenv.NewProxy(t, c.quote.addr)
	c.slowQ = &chaosQuote{e: e, addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		base: []string{"--unknown", unknown}}
	c.slowQ.start("--latency", "4s")

	c.workerEnv = []string{
		"DATABASE_URL=" + dbURL,
		"WORKER_CONCURRENCY=" + strconv.Itoa(chaosConcurrency),
		// Restarted workers may meet Redis or Postgres down: they wait.
		"WORKER_CONNECT_TIMEOUT=120s",
	}
	for range chaosWorkers {
		c.workers = append(c.workers, c.startWorker())
	}
	return c
}

// setVar sets one of the programs' environment variables.
func (e *env) setVar(name, value string) {
	for i, v := range e.vars {
		if strings.HasPrefix(v, name+"=") {
			e.vars[i] = name + "=" + value
			return
		}
	}
	e.vars = append(e.vars, name+"="+value)
}

func (c *chaos) startWorker() *proc {
	c.t.Helper()
	return c.e.start("worker", append([]string{"QUOTE_API_URL=http://" + c.qProxy.Addr()}, c.workerEnv...))
}

// produce enqueues the jobs in chunks spread over spread, so that
// enqueueing overlaps the first faults (a Redis kill among them), and
// re-runs whatever a run reports failed or unknown until all are enqueued,
// as a user would.
func (c *chaos) produce(start time.Time, spread time.Duration) {
	all := append([]string(nil), c.good...)
	// Unknown symbols go among the others, one per stretch.
	for i, u := range c.unknown {
		at := (i*len(all))/len(c.unknown) + i
		all = append(all[:at], append([]string{u}, all[at:]...)...)
	}
	chunks := 10 * max(1, c.jobs/chaosJobsPerCycle)
	size := (len(all) + chunks - 1) / chunks
	dir := c.t.TempDir()
	for i := 0; i*size < len(all); i++ {
		time.Sleep(time.Until(start.Add(spread * time.Duration(i) / time.Duration(chunks))))
		chunk := all[i*size : min(len(all), (i+1)*size)]
		if err := c.enqueueUntilDone(dir, i, chunk); err != nil {
			c.t.Errorf("producer: chunk %d: %v", i, err)
			return
		}
	}
}

func (c *chaos) enqueueUntilDone(dir string, chunk int, symbols []string) error {
	in := filepath.Join(dir, fmt.Sprintf("chunk%d.txt", chunk))
	if err := os.WriteFile(in, []byte(strings.Join(symbols, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if attempt == 300 {
			return fmt.Errorf("not all enqueued after %d runs", attempt)
		}
		failed := filepath.Join(dir, fmt.Sprintf("chunk%d.failed%d.txt", chunk, attempt))
		c.enqueuing.Store(true)
		r, err := c.runProducer("enqueue", "--id-prefix", chaosIDPrefix, "--max-retry", strconv.Itoa(chaosMaxRetry),
			"--file", in, "--failed-file", failed)
		c.enqueuing.Store(false)
		if err != nil {
			return err
		}
		c.prodRuns++
		if r.code != 0 {
			c.t.Logf("chaos: producer chunk %d run %d: exit %d: %s", chunk, attempt, r.code,
				tail(strings.TrimSpace(r.stderr), 300))
		}
		if attempt > 0 {
			c.prodAlready += strings.Count(r.stderr, "producer: already enqueued: ")
		}
		switch r.code {
		case 0:
			return nil
		case 1:
		default:
			return fmt.Errorf("producer enqueue exit %d: %s", r.code, r.stderr)
		}
		left, err := os.ReadFile(failed)
		switch {
		case err == nil && len(bytes.TrimSpace(left)) > 0:
			in = failed
			c.prodReRun += len(strings.Fields(string(left)))
		case err == nil || errors.Is(err, os.ErrNotExist):
			// Exit 1 before any symbol was tried (Redis unreachable at
			// start): run the same input again.
		default:
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// runProducer runs the producer without failing the test from the
// producer goroutine.
func (c *chaos) runProducer(args ...string) (result, error) {
	return c.e.tryRun(5*time.Minute, "producer", nil, nil, args...)
}

// chaosEvent is one fault at an offset from its cycle's start.
type chaosEvent struct {
	at time.Duration
	do func(cycle int)
}

// drive injects cycles rounds of faults, one after another on the test
// goroutine; each fault's own outage is part of it.
func (c *chaos) drive(start time.Time, cycles int) {
	events := []chaosEvent{
		{0, func(int) { c.redisKill(3 * time.Second) }},
		{5 * time.Second, func(n int) { c.kill9((2 * n) % chaosWorkers) }},
		{9 * time.Second, func(int) { c.quoteErrors(6 * time.Second) }},
		{16 * time.Second, func(int) { c.startSlowWorker() }},
		{17 * time.Second, func(int) { c.pgCut(3 * time.Second) }},
		{21 * time.Second, func(int) { c.sigtermSlowWorker() }},
		{24 * time.Second, func(n int) { c.kill9((2*n + 1) % chaosWorkers) }},
		{27 * time.Second, func(int) { c.pgBlackhole(5 * time.Second) }},
		{33 * time.Second, func(int) { c.quoteDown(3 * time.Second) }},
		{37 * time.Second, func(int) { c.quoteSlow(5 * time.Second) }},
	}
	for n := range cycles {
		base := start.Add(time.Duration(n) * chaosCycle)
		for _, ev := range events {
			time.Sleep(time.Until(base.Add(ev.at)))
			c.checkWorkers()
			ev.do(n)
		}
		rows, _ := c.e.rows()
		c.t.Logf("chaos: cycle %d done at %s: %d rows", n+1, time.Since(start).Round(time.Second), rows)
	}
	c.checkWorkers()
}

// checkWorkers restarts a regular worker that exited although no fault
// stopped it, and counts it: that is a finding, not a fault.
func (c *chaos) checkWorkers() {
	for i, w := range c.workers {
		select {
		case <-w.done:
			c.selfExits++
			c.t.Logf("chaos: worker %d exited by itself (%v); last logs:\n%s", i, w.err, tail(w.logs.String(), 2048))
			c.workers[i] = c.startWorker()
		default:
		}
	}
}

func (c *chaos) kill9(i int) {
	w := c.workers[i]
	_ = w.cmd.Process.Kill()
	<-w.done
	c.faults.kill9++
	time.Sleep(2 * time.Second) // the orchestrator's restart delay
	c.workers[i] = c.startWorker()
}

// startSlowWorker starts a worker whose every job waits 4 s on its quote
// API, with a 1 s shutdown timeout: a SIGTERM a few seconds later finds
// handlers running past the timeout.
func (c *chaos) startSlowWorker() {
	c.slow = c.e.start("worker", append([]string{"QUOTE_API_URL=http://" + c.slowQ.addr}, c.workerEnv...),
		"--concurrency", "10", "--shutdown-timeout", "1s")
}

func (c *chaos) sigtermSlowWorker() {
	before := strings.Count(c.slow.logs.String(), "Quitting worker")
	if code := c.slow.stop(c.t, 30*time.Second); code != 0 {
		c.t.Errorf("slow worker: exit %d after SIGTERM, want 0", code)
	}
	c.faults.sigterm++
	// asynq logs this for each handler still running when the shutdown
	// timeout ends, and hands its task back to the queue.
	c.faults.sigtermCut += strings.Count(c.slow.logs.String(), "Quitting worker") - before
}

// redisKill kills Redis for down, at a moment when the producer is
// enqueueing if it is within a few seconds, so that some enqueues are cut
// mid-call: while a producer run is under way, DBSIZE has grown by 20 since
// the driver first saw the run (every task hash is a key, and completed
// tasks keep theirs for their retention; starting workers add only a few).
func (c *chaos) redisKill(down time.Duration) {
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var base int64 = -1
	for ctx.Err() == nil {
		if !c.enqueuing.Load() {
			base = -1
		} else if n, err := rdb.DBSize(ctx).Result(); err == nil {
			if base < 0 {
				base = n
			} else if n >= base+20 {
				c.faults.redisKillMidEnqueue++
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	_ = rdb.Close()
	c.redis.Kill()
	c.faults.redisKill++
	time.Sleep(down)
	c.redis.Start()
}

func (c *chaos) pgCut(down time.Duration) {
	c.pgProxy.SetDown(true)
	c.faults.pgCut++
	time.Sleep(down)
	c.pgProxy.SetDown(false)
}

func (c *chaos) pgBlackhole(d time.Duration) {
	c.pgProxy.SetBlackhole(true)
	c.faults.pgBlackhole++
	c.faults.blackholeFor = d
	time.Sleep(d)
	c.pgProxy.SetBlackhole(false)
}

// quoteErrors restarts the quote API answering half its requests 500 for d.
func (c *chaos) quoteErrors(d time.Duration) {
	c.restartQuote("--error-rate", "0.5", "--latency", c.latency.String())
	c.faults.quoteErrors++
	time.Sleep(d)
	c.restartQuote("--latency", c.latency.String())
}

// quoteDown kills the quote API for down.
func (c *chaos) quoteDown(down time.Duration) {
	c.qProxy.SetDown(true)
	time.Sleep(100 * time.Millisecond)
	c.quote.stop()
	c.qProxy.SetDown(false) // connections now refused by the dead port
	c.faults.quoteDown++
	time.Sleep(down)
	c.quote.start("--latency", c.latency.String())
}

// quoteSlow restarts the quote API answering in 2 s for d.
func (c *chaos) quoteSlow(d time.Duration) {
	c.restartQuote("--latency", "2s")
	c.faults.quoteSlow++
	time.Sleep(d)
	c.restartQuote("--latency", c.latency.String())
}

// restartQuote restarts the quote API with args. The proxy in front of it
// is cut meanwhile, so that no request arrives between reading the old
// process's counters and killing it.
func (c *chaos) restartQuote(args ...string) {
	c.qProxy.SetDown(true)
	time.Sleep(100 * time.Millisecond)
	c.quote.stop()
	c.quote.start(args...)
	c.qProxy.SetDown(false)
}

func (c *chaos) upstream() quoteStats {
	c.t.Helper()
	var sum quoteStats
	for _, q := range []*chaosQuote{c.quote, c.slowQ} {
		q.stop()
		sum.add(q.counted)
	}
	return sum
}

// chaosQuote is a quoteserver on a fixed port, restarted with other
// flags; its request counters are summed over every process.
type chaosQuote struct {
	e       *env
	addr    string
	base    []string
	p       *proc
	counted quoteStats
}

type quoteStats struct {
	Requests uint64
	ByStatus map[int]uint64
	Canceled uint64
}

func (s *quoteStats) add(o quoteStats) {
	s.Requests += o.Requests
	s.Canceled += o.Canceled
	if s.ByStatus == nil {
		s.ByStatus = map[int]uint64{}
	}
	for k, v := range o.ByStatus {
		s.ByStatus[k] += v
	}
}

func (q *chaosQuote) start(args ...string) {
	q.e.t.Helper()
	q.p = q.e.start("quoteserver", nil, append(append([]string{"--addr", q.addr}, q.base...), args...)...)
	q.e.loggedAddr(q.p, "quoteserver listening")
}

// stop reads the process's counters and kills it.
func (q *chaosQuote) stop() {
	q.e.t.Helper()
	if q.p == nil {
		return
	}
	var st quoteStats
	resp, err := http.Get("http://" + q.addr + "/stats")
	if err == nil {
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
	}
	if err != nil {
		q.e.t.Fatalf("quoteserver /stats: %v", err)
	}
	q.counted.add(st)
	q.p.kill()
	q.p = nil
}

// drain waits until no task is pending, active, scheduled or waiting to
// retry: kill -9 orphans come back only after asynq's lease and recoverer
// (60–120 s), and retried tasks after their backoff.
func (c *chaos) drain(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		states := taskStates(c.t, c.redis.Addr(), c.ids())
		open := map[string]int{}
		for _, s := range states {
			if s != "completed" && s != "archived" && s != "" {
				open[s]++
			}
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Logf("chaos: still outstanding after %s: %v (accounting anyway)", timeout, open)
			return
		}
		if time.Since(lastLog) > 15*time.Second {
			c.t.Logf("chaos: draining: outstanding %v", open)
			lastLog = time.Now()
		}
		time.Sleep(time.Second)
	}
}

// ids returns every task id the test enqueued, good symbols first.
func (c *chaos) ids() []string {
	var ids []string
	for _, s := range append(append([]string(nil), c.good...), c.unknown...) {
		ids = append(ids, chaosIDPrefix+":"+s)
	}
	return ids
}

// chaosAccount is where every enqueued task id ended.
type chaosAccount struct {
	// good symbols
	ok              int // exactly one row, task completed
	okGone          int // exactly one row, task no longer in Redis
	lost            int // no row, and the task not archived
	duplicated      int // more than one row for the task id (any symbol)
	wronglyArchived int // archived although the symbol is a good one
	// unknown symbols
	unknownArchived int // archived, no row: the right end
	strayRows       int // rows whose task id the test never enqueued
	problems        []string
}

func (a chaosAccount) counts() map[string]int {
	return map[string]int{"ok": a.ok, "okGone": a.okGone, "lost": a.lost, "duplicated": a.duplicated,
		"wronglyArchived": a.wronglyArchived, "unknownArchived": a.unknownArchived, "strayRows": a.strayRows,
		"problems": len(a.problems)}
}

func (c *chaos) account() chaosAccount {
	c.t.Helper()
	rowsOf := c.e.rowsPerTask()
	states := taskStates(c.t, c.redis.Addr(), c.ids())

	var a chaosAccount
	unknown := map[string]bool{}
	for _, s := range c.unknown {
		unknown[chaosIDPrefix+":"+s] = true
	}
	for _, id := range c.ids() {
		n, state := rowsOf[id], states[id]
		delete(rowsOf, id)
		if n > 1 {
			a.duplicated++
			a.problems = append(a.problems, fmt.Sprintf("duplicated: %s has %d rows (state %q)", id, n, state))
			continue
		}
		if unknown[id] {
			if state == "archived" && n == 0 {
				a.unknownArchived++
			} else {
				a.problems = append(a.problems, fmt.Sprintf("unknown symbol %s: %d rows, state %q; want archived, no row", id, n, state))
			}
			continue
		}
		switch {
		case state == "archived":
			a.wronglyArchived++
			a.problems = append(a.problems, fmt.Sprintf("archived wrongly: %s (%d rows)", id, n))
		case n == 0 && (state == "completed" || state == ""):
			a.lost++
			a.problems = append(a.problems, fmt.Sprintf("lost: %s has no row, task state %q", id, state))
		case n == 0:
			a.problems = append(a.problems, fmt.Sprintf("unaccounted: %s still %s", id, state))
		case state == "completed":
			a.ok++
		case state == "":
			a.okGone++
		default:
			a.problems = append(a.problems, fmt.Sprintf("unaccounted: %s has its row but is still %s", id, state))
		}
	}
	for id := range rowsOf {
		a.strayRows++
		a.problems = append(a.problems, "stray row: task id "+id)
	}
	sort.Strings(a.problems)
	return a
}

func (a chaosAccount) table(jobs int, f chaosFaults, reExecuted int64, wall time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| jobs | ok | lost | duplicated | archived wrongly | unknown symbols archived |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d/%d |\n", jobs, a.ok+a.okGone, a.lost, a.duplicated, a.wronglyArchived, a.unknownArchived, chaosUnknown)
	if a.okGone > 0 {
		fmt.Fprintf(&b, "(of the ok, %d have their row but their task is no longer in Redis)\n", a.okGone)
	}
	fmt.Fprintf(&b, "faults: worker kill -9 ×%d, worker SIGTERM past timeout ×%d (%d handlers cut), redis kill ×%d (%d during an enqueue), pg cut ×%d, pg blackhole ×%d (%s each), quote 500s ×%d, quote down ×%d, quote slow ×%d\n",
		f.kill9, f.sigterm, f.sigtermCut, f.redisKill, f.redisKillMidEnqueue, f.pgCut, f.pgBlackhole, f.blackholeFor, f.quoteErrors, f.quoteDown, f.quoteSlow)
	fmt.Fprintf(&b, "re-executed (upstream requests − tasks): %d; other problems: %d; wall %s", reExecuted, len(a.problems)-a.lost-a.duplicated-a.wronglyArchived, wall.Round(time.Second))
	return b.String()
}
