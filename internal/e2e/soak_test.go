package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

// Soak figures. The short form runs in `make test`; TICKERQ_SOAK_JOBS sets
// the number of jobs of the full form (`make soak`: 1 000 000).
const (
	soakShortJobs = 30000
	// Every soakRejectEvery-th job has a symbol the test's trigger refuses
	// for its data. Kept under asynq's archive cap (10 000 tasks) even at
	// 1 000 000 jobs, so that every rejected task can be found archived.
	soakRejectEvery = 200
	soakWorkers     = 2
	// soakStatementTimeout rides in the workers' DATABASE_URL; the trigger's
	// sleeping statements outlast it, so the server cancels them (57014).
	soakStatementTimeout = "1000" // ms
	soakSamplePeriod     = 200 * time.Millisecond
)

// soakFaultsSQL installs the failing batches in the test's own database, as
// the superuser. Per row: a symbol starting with R is refused with
// check_violation (23514), a data error, so the committer splits its batch
// down to that row and only its job fails, permanently. Per INSERT
// statement on stock_prices (one a batch attempt, halves included), numbered
// by a sequence: statement n with n % 300 = 50 sleeps past the workers'
// statement_timeout (57014, query_canceled) and every other n with n % 23 = 7
// raises serialization_failure (40001). Both fail the whole batch as
// transient, so its jobs retry. Sequences are not rolled back with the
// failed transactions, so they count the faults raised.
const soakFaultsSQL = `
CREATE SEQUENCE soak_statements;
CREATE SEQUENCE soak_raised_40001;
CREATE SEQUENCE soak_raised_57014;
CREATE SEQUENCE soak_raised_23514;
CREATE FUNCTION soak_reject_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.symbol LIKE 'R%' THEN
        PERFORM nextval('soak_raised_23514');
        RAISE EXCEPTION 'soak: task % refused', NEW.task_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION soak_fail_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := nextval('soak_statements');
BEGIN
    IF n % 300 = 50 THEN
        PERFORM nextval('soak_raised_57014');
        PERFORM pg_sleep(3);
    ELSIF n % 23 = 7 THEN
        PERFORM nextval('soak_raised_40001');
        RAISE EXCEPTION 'soak: statement % fails', n USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER soak_reject_row BEFORE INSERT ON stock_prices
    FOR EACH ROW EXECUTE FUNCTION soak_reject_row();
CREATE TRIGGER soak_fail_statement BEFORE INSERT ON stock_prices
    FOR EACH STATEMENT EXECUTE FUNCTION soak_fail_statement();
`

// TestRoleGuardSoak (issue 8 item 5): jobs through two workers' group-
// committed writers while batches fail for their data (split down to the
// refused row), fail whole (40001, a statement cancelled by
// statement_timeout) and lose their connections (a TCP proxy cut now and
// then). A sampler every 200 ms reads each worker's role guard counter,
// tickerq_pg_role_leaks_total, which must stay 0, and pg_stat_activity,
// which must show no backend of ours in a state that could carry a role
// past its transaction (see soakBadActivity for what that can and cannot
// see). At the end every task id is accounted for: one row for each task
// meant to succeed, every row written under the role, each refused task
// archived with no row.
//
// Not parallel: it keeps both cores busy.
func TestRoleGuardSoak(t *testing.T) {
	n := soakShortJobs
	if s := os.Getenv("TICKERQ_SOAK_JOBS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < soakRejectEvery {
			t.Fatalf("TICKERQ_SOAK_JOBS=%q: want a number ≥ %d", s, soakRejectEvery)
		}
		n = v
	}
	full := n > soakShortJobs
	chunk := min(n, 50000)
	cutEvery := 5 * time.Second
	if full {
		cutEvery = 20 * time.Second
	}

	e := newEnv(t)
	// A redis-server of the test's own: a million tasks (kept 24 h after
	// they complete) do not belong in the shared one.
	rs := testenv.StartRedisServer(t)
	for i, v := range e.vars {
		if strings.HasPrefix(v, "REDIS_URL=") {
			e.vars[i] = "REDIS_URL=" + rs.URL(0)
		}
	}

	admin := e.db.Conn(t)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, soakFaultsSQL); err != nil {
		t.Fatalf("install the fault triggers: %v", err)
	}
	role := pgx.Identifier{e.db.Role.String()}.Sanitize()
	if _, err := admin.Exec(ctx, "GRANT USAGE ON SEQUENCE soak_statements, soak_raised_40001, soak_raised_57014, soak_raised_23514 TO "+role); err != nil {
		t.Fatal(err)
	}

	sampler := newSoakSampler(t, e)
	sampler.selfCheck(t)
	sampler.skip = []uint32{admin.PgConn().PID()}

	quoteURL, _ := e.startQuoteserver()
	pgProxy, proxied := testenv.ProxyURL(t, e.db.URL)
	dbURL, err := url.Parse(proxied)
	if err != nil {
		t.Fatal(err)
	}
	q := dbURL.Query()
	q.Set("statement_timeout", soakStatementTimeout) // pgx sends unknown keys as run-time parameters
	dbURL.RawQuery = q.Encode()
	workerEnv := []string{"QUOTE_API_URL=" + quoteURL, "DATABASE_URL=" + dbURL.String()}
	for range soakWorkers {
		_, addr := e.startWorker(workerEnv)
		sampler.admins = append(sampler.admins, addr)
	}
	sampler.start()

	// The cutter closes every worker connection to Postgres through the
	// proxy for 200 ms each cutEvery.
	cutStop, cutDone := make(chan struct{}), make(chan struct{})
	cuts := 0
	go func() {
		defer close(cutDone)
		for {
			select {
			case <-cutStop:
				return
			case <-time.After(cutEvery):
			}
			pgProxy.SetDown(true)
			time.Sleep(200 * time.Millisecond)
			pgProxy.SetDown(false)
			cuts++
		}
	}()
	stopCutter := sync.OnceFunc(func() { close(cutStop); <-cutDone })
	t.Cleanup(stopCutter)

	start := time.Now()
	ok := make(map[string]bool, n) // task id → meant to succeed
	rejected := make(map[string]bool, n/soakRejectEvery+1)
	for from := 0; from < n; from += chunk {
		// Enqueue in chunks while the workers run, so Redis holds a
		// bounded backlog rather than all n pending tasks at once.
		for e.stats()["default"].Pending > chunk {
			time.Sleep(time.Second)
		}
		syms := make([]string, 0, chunk)
		for i := from; i < min(n, from+chunk); i++ {
			if i%soakRejectEvery == soakRejectEvery-1 {
				syms = append(syms, fmt.Sprintf("R%07d", i))
			} else {
				syms = append(syms, fmt.Sprintf("S%07d", i))
			}
		}
		for _, id := range e.enqueueFile(syms, "--id-prefix", "soak") {
			if _, sym, _ := strings.Cut(id, ":"); strings.HasPrefix(sym, "R") {
				rejected[id] = true
			} else {
				ok[id] = true
			}
		}
	}
	enqueued := time.Since(start)
	e.waitDrained(10*time.Minute + time.Duration(n)*2*time.Millisecond)
	wall := time.Since(start)
	stopCutter()
	sampler.stop()
	t.Logf("%d jobs (%d meant to be refused) enqueued in %s, all done in %s (%.0f jobs/s); %d Postgres cuts through the proxy",
		n, len(rejected), enqueued.Round(time.Second), wall.Round(time.Second), float64(n)/wall.Seconds(), cuts)

	// The role guard and pg_stat_activity, sampled.
	s := sampler.report(t)
	if s.maxLeaks != 0 || s.bad != 0 {
		t.Errorf("role guard: max tickerq_pg_role_leaks_total %v, %d bad pg_stat_activity rows (%v); want 0 and 0", s.maxLeaks, s.bad, s.badExamples)
	}
	if s.samples < int(wall/soakSamplePeriod)/4 || s.scrapeErrs > s.samples/10 || s.pgErrs > s.samples/10 {
		t.Errorf("sampler: %d samples in %s, %d failed scrapes, %d failed pg_stat_activity reads; too few good samples to vouch for anything",
			s.samples, wall.Round(time.Second), s.scrapeErrs, s.pgErrs)
	}

	// The failed batches, as the workers counted them and as the triggers
	// raised them.
	var committed, rejectedFlushes, errorFlushes, rejectedRows float64
	for _, addr := range sampler.admins {
		m := get(t, "http://"+addr+"/metrics")
		committed += metricValue(t, m, `tickerq_pg_flush_duration_seconds_count{outcome="committed"}`)
		rejectedFlushes += metricValue(t, m, `tickerq_pg_flush_duration_seconds_count{outcome="rejected"}`)
		errorFlushes += metricValue(t, m, `tickerq_pg_flush_duration_seconds_count{outcome="error"}`)
		rejectedRows += metricValue(t, m, `tickerq_pg_rows_rejected_total`)
		if v := metricValue(t, m, "tickerq_pg_role_leaks_total"); v != 0 {
			t.Errorf("worker %s: tickerq_pg_role_leaks_total = %v at the end, want 0", addr, v)
		}
	}
	raised := map[string]int64{}
	for _, seq := range []string{"soak_statements", "soak_raised_40001", "soak_raised_57014", "soak_raised_23514"} {
		var v int64
		if err := admin.QueryRow(ctx, "SELECT coalesce(last_value, 0) FROM pg_sequences WHERE sequencename = $1", seq).Scan(&v); err != nil {
			t.Fatal(err)
		}
		raised[seq] = v
	}
	t.Logf("batch transactions (workers' tickerq_pg_flush_duration_seconds_count): committed %.0f, rejected for data %.0f (split), error %.0f (whole batch retried); rows refused one by one %.0f",
		committed, rejectedFlushes, errorFlushes, rejectedRows)
	t.Logf("raised by the triggers: %d INSERT statements, 40001 %d, 57014 (slept past statement_timeout) %d, 23514 row refusals %d; the other %.0f error batches are the cuts' and any statement_timeout hit by load",
		raised["soak_statements"], raised["soak_raised_40001"], raised["soak_raised_57014"], raised["soak_raised_23514"],
		errorFlushes-float64(raised["soak_raised_40001"]+raised["soak_raised_57014"]))
	if raised["soak_raised_40001"] == 0 || raised["soak_raised_57014"] == 0 || cuts == 0 {
		t.Errorf("faults: 40001 %d, 57014 %d, cuts %d; want each at least once", raised["soak_raised_40001"], raised["soak_raised_57014"], cuts)
	}
	if errorFlushes < float64(raised["soak_raised_40001"]+raised["soak_raised_57014"]) {
		t.Errorf("workers counted %.0f failed batches, fewer than the %d the triggers failed", errorFlushes, raised["soak_raised_40001"]+raised["soak_raised_57014"])
	}
	if rejectedRows < float64(len(rejected)) {
		t.Errorf("workers refused %.0f rows one by one, want at least the %d refused tasks", rejectedRows, len(rejected))
	}

	// The account.
	rowsByID := map[string]int{}
	rows, err := admin.Query(ctx, "SELECT task_id, count(*), count(*) FILTER (WHERE written_by <> $1) FROM stock_prices GROUP BY task_id", e.db.Role.String())
	if err != nil {
		t.Fatal(err)
	}
	notRole := 0
	for rows.Next() {
		var id string
		var c, other int
		if err := rows.Scan(&id, &c, &other); err != nil {
			t.Fatal(err)
		}
		rowsByID[id] += c
		notRole += other
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	archived := e.archivedIDs()
	var total, lost, dup, stray, refusedWithRow, wronglyArchived, refusedNotArchived int
	for id, c := range rowsByID {
		total += c
		switch {
		case rejected[id]:
			refusedWithRow++
		case !ok[id]:
			stray++
		case c > 1:
			dup++
		}
	}
	for id := range ok {
		if rowsByID[id] == 0 {
			lost++
		}
		if archived[id] {
			wronglyArchived++
		}
	}
	for id := range rejected {
		if !archived[id] {
			refusedNotArchived++
		}
	}
	qs := e.stats()["default"]
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	if info, err := rc.Info(ctx, "memory").Result(); err == nil {
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory_human:"); ok {
				t.Logf("private Redis used_memory at the end (completed tasks kept 24 h): %s", v)
			}
		}
	}
	t.Logf("account: %d rows for %d task ids (%d meant to succeed), %d archived (%d meant to be refused); lost %d, duplicated %d, stray %d, refused with a row %d, wrongly archived %d, refused not archived %d, rows not written by the role %d; queue %+v",
		total, len(rowsByID), len(ok), len(archived), len(rejected), lost, dup, stray, refusedWithRow, wronglyArchived, refusedNotArchived, notRole, qs)
	if total != len(ok) || lost+dup+stray+refusedWithRow+wronglyArchived+refusedNotArchived+notRole != 0 {
		t.Errorf("account is off (see above)")
	}
	if qs.Completed != len(ok) || qs.Archived != len(rejected) || qs.Pending+qs.Active+qs.Scheduled+qs.Retry != 0 {
		t.Errorf("queue %+v; want %d completed, %d archived, nothing left", qs, len(ok), len(rejected))
	}
}

// waitDrained runs `producer wait` until every queue is drained, in
// rounds shorter than run's own limit, failing after timeout.
func (e *env) waitDrained(timeout time.Duration) {
	e.t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		r := e.run("producer", nil, nil, "wait", "--timeout", "5m")
		switch {
		case r.code == 0:
			return
		case r.code != 1 || time.Now().After(deadline):
			e.t.Fatalf("producer wait: exit %d after %s\nstdout: %s\nstderr: %s", r.code, timeout, r.stdout, r.stderr)
		}
	}
}

// archivedIDs lists the ids of the default queue's archived tasks.
func (e *env) archivedIDs() map[string]bool {
	e.t.Helper()
	out := e.producer(nil, "tasks", "list", "--queue", "default", "--state", "archived", "--limit", "0", "--json")
	ids := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var task struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &task); err != nil {
			e.t.Fatalf("tasks list --json line %q: %v", sc.Text(), err)
		}
		ids[task.ID] = true
	}
	return ids
}
