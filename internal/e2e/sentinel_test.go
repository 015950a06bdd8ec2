package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

// TestSentinelFailover runs two workers and the producer through
// redis-sentinel:// against a master, a replica and three sentinels of the
// test's own, and kills (SIGKILL) the master while the producer enqueues at
// full speed. Neither program is restarted: both must reach the promoted
// replica. Afterwards every task the producer reported enqueued must have
// exactly one row, or be named lost (acknowledged by the old master, not
// replicated before it died), and no row may belong to a task the
// producer did not report.
//
// The stalled-replica cases provoke that loss on purpose: the replica is
// stopped (SIGSTOP) while the master acknowledges enqueues, then the master
// is killed and the replica promoted with what it had. With
// min-replicas-to-write the master refuses writes once the replica lags,
// and the producer reports those symbols failed instead.
//
// The short form leaves the kill's orphans (see killMasterMidRun) active and
// names them; TICKERQ_E2E_SENTINEL_FULL=1 also waits (up to 3 min) until
// asynq's recoverer has given them their rows.
// TICKERQ_E2E_SENTINEL_ROUNDS=N repeats the kill N times (default 1).
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	rounds := 1
	if v := os.Getenv("TICKERQ_E2E_SENTINEL_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TICKERQ_E2E_SENTINEL_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	// One after another, not in parallel: the failover times are measured,
	// and the machine is small.
	for i := range rounds {
		t.Run(fmt.Sprintf("kill-master-mid-run/%d", i+1), killMasterMidRun)
	}
	t.Run("stalled-replica", func(t *testing.T) { stalledReplica(t, nil) })
	t.Run("stalled-replica-min-replicas", func(t *testing.T) {
		stalledReplica(t, []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"})
	})
}

// sentinelEnv is newEnv with REDIS_URL naming set's sentinels.
func sentinelEnv(t *testing.T, set *testenv.SentinelSet) *env {
	t.Helper()
	e := newEnv(t)
	for i, v := range e.vars {
		if strings.HasPrefix(v, "REDIS_URL=") {
			e.vars[i] = "REDIS_URL=" + set.URL()
		}
	}
	return e
}

func killMasterMidRun(t *testing.T) {
	const n = 10000
	set := testenv.StartSentinelSet(t)
	e := sentinelEnv(t, set)
	quoteURL, _ := e.startQuoteserver()
	var admins []string
	for range 2 {
		_, admin := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, "WORKER_CONCURRENCY=20"})
		admins = append(admins, admin)
	}
	oldMaster := set.Master.Addr()

	// Watch the replica from the start, to time its promotion and the first
	// enqueue and the first completed job it takes as the master.
	ctx, stopWatch := context.WithCancel(context.Background())
	w := watchPromotion(ctx, set.Replica.Addr())
	defer stopWatch()

	prefix := "failover" + strconv.FormatInt(time.Now().UnixNano(), 36)
	run := startProducer(t, e, symbols("S", n), "enqueue", "--file", "-", "--id-prefix", prefix)
	waitKeys(t, set.Master.Addr(), n/5, run)
	set.Master.Kill()
	killed := time.Now()
	newMaster := set.WaitPromoted(oldMaster, 30*time.Second)
	sentinelsAgreed := time.Since(killed)
	if newMaster != set.Replica.Addr() {
		t.Fatalf("sentinels promoted %s, want the replica %s", newMaster, set.Replica.Addr())
	}

	r := <-run.done
	out := parseEnqueue(t, r)
	t.Logf("producer: exit %d; %d enqueued, %d already enqueued (unknown, tried again), %d failed, %d unknown; its stderr about the failover: %q",
		r.code, len(out.enqueued), len(out.already), len(out.failed), len(out.unknown), out.failover)
	if r.code != 0 || len(out.enqueued)+len(out.already) != n {
		t.Fatalf("producer exit %d with %d enqueued and %d already enqueued of %d; want exit 0 with all of them, the rest enqueued on the new master\nstderr: %s",
			r.code, len(out.enqueued), len(out.already), n, tail(r.stderr, 4096))
	}
	if len(out.failover) == 0 {
		t.Errorf("producer said nothing about waiting for the new master")
	}

	// Every task is done except those a worker had in hand at the kill and
	// could not report done: asynq's syncer retries that with a context it
	// has already cancelled (processor.go: defer cancel()), so they stay
	// active until their lease runs out and the recoverer moves them (60 to
	// 120 s). They are orphans: active, and in no worker's list of the tasks
	// it works on, for longer than asynq's 5 s heartbeat that updates it.
	rc := redis.NewClient(&redis.Options{Addr: newMaster})
	defer rc.Close()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: newMaster})
	defer insp.Close()
	var orphans []string
	var orphanSet string
	var stableSince time.Time
	waitQueue(t, rc, 60*time.Second, func(active map[string]time.Time) bool {
		servers, err := insp.Servers()
		if err != nil {
			return false
		}
		busy := map[string]bool{}
		for _, srv := range servers {
			for _, w := range srv.ActiveWorkers {
				busy[w.TaskID] = true
			}
		}
		orphans = orphans[:0]
		for id := range active {
			if !busy[id] {
				orphans = append(orphans, id)
			}
		}
		slices.Sort(orphans)
		if set := strings.Join(orphans, " "); len(orphans) != len(active) || set != orphanSet {
			orphanSet, stableSince = set, time.Now()
		}
		return len(orphans) == len(active) && time.Since(stableSince) > 6*time.Second
	})
	slices.Sort(orphans)
	stopWatch()
	times := w.result()
	t.Logf("master %s killed; replica %s took the master role %s after, sentinels all named it %s after; first new task on it %s after, first job completed through it %s after",
		oldMaster, newMaster, since(killed, times.promoted), sentinelsAgreed.Round(time.Millisecond),
		since(killed, times.firstTask), since(killed, times.firstDone))
	if times.firstTask.IsZero() || times.firstDone.IsZero() {
		t.Errorf("no task was enqueued or completed through the new master")
	}
	t.Logf("%d orphans (active at the kill, left active by asynq until its recoverer): %s", len(orphans), strings.Join(orphans, " "))
	if len(orphans) > 2*20 {
		t.Errorf("%d orphans; want at most the 40 jobs the two workers can hold", len(orphans))
	}
	// The workers' own clients (readiness, the inspector) and the
	// producer's read commands follow the new master too.
	for _, admin := range admins {
		if code := status(t, "http://"+admin+"/readyz"); code != http.StatusOK {
			t.Errorf("worker /readyz after the failover = %d, want 200", code)
		}
	}
	if q := e.stats()["default"]; q.Completed < n-len(orphans)-n/10 {
		t.Errorf("producer stats after the failover: %+v; want about %d completed", q, n-len(orphans))
	}
	if os.Getenv("TICKERQ_E2E_SENTINEL_FULL") != "" {
		start := time.Now()
		e.producer(nil, "wait", "--timeout", "3m")
		t.Logf("orphans recovered by asynq and done %s later, %s after the kill", time.Since(start).Round(time.Second), time.Since(killed).Round(time.Second))
		orphans = nil
	}

	acct := account(t, e, newMaster, append(out.enqueued, out.already...), out.unknown, prefix)
	t.Logf("account of %d acknowledged tasks: %d done with one row, %d orphans not done yet, %d lost (acknowledged by the old master, not on the new one), %d duplicated, %d in another state; %d rows of tasks not reported enqueued (unknown ones that got in: %d)",
		n, acct.ok, len(orphans), len(acct.lost), acct.duplicated, len(acct.otherState), acct.stray, acct.unknownIn)
	if len(acct.lost) > 0 {
		t.Logf("lost (named): %s", strings.Join(acct.lost, " "))
	}
	orphaned := map[string]bool{}
	for _, id := range orphans {
		orphaned[id] = true
	}
	for _, o := range acct.otherState {
		id, _, _ := strings.Cut(o, "=")
		if !orphaned[id] {
			t.Errorf("task %s not done and not an orphan", o)
		}
	}
	if acct.ok+len(acct.lost)+len(orphans) != n || acct.duplicated != 0 || len(acct.otherState) != len(orphans) || acct.stray != 0 {
		t.Fatalf("account: %+v; want every acknowledged task with one row or lost, no duplicate, no stray row", acct)
	}
}

// stalledReplica stops the replica, enqueues while the master acknowledges
// what it cannot replicate, kills the master, resumes the replica and
// counts what the promoted replica lacks of what was acknowledged.
func stalledReplica(t *testing.T, masterArgs []string) {
	const n = 20000
	set := testenv.StartSentinelSet(t, masterArgs...)
	e := sentinelEnv(t, set)
	oldMaster := set.Master.Addr()
	prefix := "stall" + strconv.FormatInt(time.Now().UnixNano(), 36)

	set.StallReplica(true)
	// Longer than min-replicas-max-lag (1 s), plus the replica's ack period
	// (1 s), plus the master's once-a-second recount of good replicas, so
	// that such a master refuses writes from the start.
	time.Sleep(3500 * time.Millisecond)
	run := startProducer(t, e, symbols("L", n), "enqueue", "--file", "-", "--id-prefix", prefix)
	r := <-run.done
	set.Master.Kill()
	set.StallReplica(false)
	newMaster := set.WaitPromoted(oldMaster, 30*time.Second)
	out := parseEnqueue(t, r)
	t.Logf("producer (replica stopped, master alive): exit %d; %d enqueued, %d failed, %d unknown; first failure: %q",
		r.code, len(out.enqueued), len(out.failed), len(out.unknown), out.firstFailure)

	acct := account(t, e, newMaster, out.enqueued, out.unknown, prefix)
	t.Logf("master args %v: of %d acknowledged tasks, %d on the promoted replica, %d lost (acknowledged, not replicated)",
		masterArgs, len(out.enqueued), acct.present, len(acct.lost))
	if acct.present+len(acct.lost) != len(out.enqueued) || acct.stray != 0 {
		t.Fatalf("account: %+v; want every acknowledged task either on the new master or lost, and nothing else", acct)
	}
	if masterArgs != nil {
		// The master refuses writes once the replica's last ack is older
		// than min-replicas-max-lag: NOREPLICAS, an error reply, so the
		// producer knows those symbols are not in Redis.
		// Redis bounds the loss to the writes of that window, it does not
		// rule it out, so lost ones are counted above, not refused here.
		if r.code != 1 || len(out.failed) == 0 || !strings.Contains(out.firstFailure, "NOREPLICAS") {
			t.Fatalf("with min-replicas-to-write: exit %d, %d failed, first %q; want exit 1 and symbols refused with NOREPLICAS",
				r.code, len(out.failed), out.firstFailure)
		}
	} else if r.code != 0 || len(out.enqueued) != n {
		t.Fatalf("exit %d with %d of %d enqueued; want all acknowledged by the master", r.code, len(out.enqueued), n)
	}
}

// producerRun is a producer running in the background.
type producerRun struct {
	done chan result
}

// startProducer runs the producer with stdin lines, with stdout and stderr
// kept apart; its result arrives on done. It is killed if the test ends
// first.
func startProducer(t *testing.T, e *env, lines []string, args ...string) producerRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "producer"), args...)
	cmd.Env = e.environ()
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start producer: %v", err)
	}
	run := producerRun{done: make(chan result, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := cmd.Wait()
		r := result{stdout: out.String(), stderr: errOut.String(), code: -1}
		var exit *exec.ExitError
		switch {
		case err == nil:
			r.code = 0
		case errors.As(err, &exit):
			r.code = exit.ExitCode()
		default:
			r.stderr += "\n" + err.Error()
		}
		run.done <- r
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return run
}

// enqueueOutput is what `producer enqueue` reported.
type enqueueOutput struct {
	enqueued, already []string // task IDs
	failed, unknown   []string // symbols
	failover          []string // its lines about waiting for a master
	firstFailure      string
}

func parseEnqueue(t *testing.T, r result) enqueueOutput {
	t.Helper()
	var o enqueueOutput
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		id, _, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("enqueue output line %q is not ID<TAB>SYMBOL<TAB>QUEUE", sc.Text())
		}
		o.enqueued = append(o.enqueued, id)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		switch {
		case strings.HasPrefix(l, "producer: already enqueued: "):
			// producer: already enqueued: SYM: task ID exists in queue Q
			_, rest, _ := strings.Cut(l, ": task ")
			id, _, _ := strings.Cut(rest, " ")
			o.already = append(o.already, id)
		case strings.HasPrefix(l, "producer: not enqueued: "):
			sym, _, _ := strings.Cut(strings.TrimPrefix(l, "producer: not enqueued: "), ":")
			o.failed = append(o.failed, sym)
			if o.firstFailure == "" {
				o.firstFailure = l
			}
		case strings.HasPrefix(l, "producer: unknown, may be enqueued: "):
			sym, _, _ := strings.Cut(strings.TrimPrefix(l, "producer: unknown, may be enqueued: "), ":")
			o.unknown = append(o.unknown, sym)
		case strings.Contains(l, "sentinels' master") || strings.Contains(l, "redis answers again"):
			o.failover = append(o.failover, l)
		}
	}
	return o
}

// waitKeys waits until the server at addr holds at least n keys, so that
// a kill falls in the middle of the producer's run.
func waitKeys(t *testing.T, addr string, n int, run producerRun) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		size, err := c.DBSize(context.Background()).Result()
		if err == nil && size >= int64(n) {
			return
		}
		select {
		case r := <-run.done:
			t.Fatalf("producer finished before the master held %d keys (holds %d): exit %d\n%s", n, size, r.code, tail(r.stderr, 2048))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("master holds %d keys after 30s, want %d: %v", size, n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// promotionTimes are when the watched replica became the master, first
// held a key it had not had then (a new task), and first counted a
// processed job.
type promotionTimes struct {
	promoted, firstTask, firstDone time.Time
}

type promotionWatch struct {
	mu    sync.Mutex
	times promotionTimes
	done  chan struct{}
}

// watchPromotion samples the server at addr every few milliseconds until
// ctx is done.
func watchPromotion(ctx context.Context, addr string) *promotionWatch {
	w := &promotionWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer c.Close()
		var size0, processed0 int64
		for ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
			info, err := c.Info(ctx, "replication").Result()
			if err != nil || !strings.Contains(info, "role:master") {
				continue
			}
			now := time.Now()
			size, err1 := c.DBSize(ctx).Result()
			processed, err2 := c.Get(ctx, "asynq:{default}:processed").Int64()
			if err1 != nil || (err2 != nil && !errors.Is(err2, redis.Nil)) {
				continue
			}
			w.mu.Lock()
			t := &w.times
			switch {
			case t.promoted.IsZero():
				t.promoted, size0, processed0 = now, size, processed
			default:
				if t.firstTask.IsZero() && size > size0 {
					t.firstTask = now
				}
				if t.firstDone.IsZero() && processed > processed0 {
					t.firstDone = now
				}
			}
			done := !t.firstTask.IsZero() && !t.firstDone.IsZero()
			w.mu.Unlock()
			if done {
				return
			}
		}
	}()
	return w
}

// waitQueue polls the default queue on c until nothing is pending,
// scheduled or waiting to retry and done(active tasks and their lease
// expiries) is true, or fails the test after timeout.
func waitQueue(t *testing.T, c *redis.Client, timeout time.Duration, done func(active map[string]time.Time) bool) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		var pending, scheduled, retry *redis.IntCmd
		var leases *redis.ZSliceCmd
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			pending = p.LLen(ctx, "asynq:{default}:pending")
			scheduled = p.ZCard(ctx, "asynq:{default}:scheduled")
			retry = p.ZCard(ctx, "asynq:{default}:retry")
			leases = p.ZRangeWithScores(ctx, "asynq:{default}:lease", 0, -1)
			return nil
		})
		if err != nil {
			t.Fatalf("queue state: %v", err)
		}
		active := map[string]time.Time{}
		for _, z := range leases.Val() {
			active[z.Member.(string)] = time.Unix(int64(z.Score), 0)
		}
		if pending.Val()+scheduled.Val()+retry.Val() == 0 && done(active) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: pending %d, scheduled %d, retry %d, active %d", timeout, pending.Val(), scheduled.Val(), retry.Val(), len(active))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// result waits for the watch to end (its context done) and returns it.
func (w *promotionWatch) result() promotionTimes {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.times
}

func since(from, to time.Time) string {
	if to.IsZero() {
		return "never"
	}
	return to.Sub(from).Round(time.Millisecond).String()
}

// accountResult is the fate of the tasks a producer reported enqueued.
type accountResult struct {
	present    int      // held by the new master, in any state
	ok         int      // completed, with exactly one row
	lost       []string // not on the new master
	duplicated int      // more than one row
	otherState []string // on the new master, not completed (id=state)
	stray      int      // rows of tasks of prefix not reported enqueued nor unknown
	unknownIn  int      // rows of tasks reported unknown
}

// account looks up each of ids on the new master and in stock_prices.
func account(t *testing.T, e *env, newMaster string, ids, unknownSyms []string, prefix string) accountResult {
	t.Helper()
	states := taskStates(t, newMaster, ids)
	rowsOf := e.rowsPerTask()

	var a accountResult
	reported := map[string]bool{}
	for _, id := range ids {
		reported[id] = true
		state := states[id]
		if state == "" {
			a.lost = append(a.lost, id)
			continue
		}
		a.present++
		switch k := rowsOf[id]; {
		case k > 1:
			a.duplicated++
		case state == "completed" && k == 1:
			a.ok++
		case state != "pending" || k != 0: // pending: no worker in this case
			a.otherState = append(a.otherState, id+"="+state+"/rows="+strconv.Itoa(k))
		}
	}
	unknown := map[string]bool{}
	for _, s := range unknownSyms {
		unknown[prefix+":"+s] = true
	}
	for id := range rowsOf {
		switch {
		case reported[id]:
		case unknown[id]:
			a.unknownIn++
		default:
			a.stray++
		}
	}
	slices.Sort(a.lost)
	return a
}
