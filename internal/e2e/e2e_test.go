package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/testenv"
)

// TestEndToEnd2000 is the whole pipeline through the contract: 2 000
// symbols enqueued from a file, processed by one worker, 2 000 rows.
func TestEndToEnd2000(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	worker, admin := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, "WORKER_CONCURRENCY=25"})

	ids := e.enqueueFile(symbols("E", 2000))
	start := time.Now()
	e.producer(nil, "wait", "--timeout", "3m")
	t.Logf("2000 jobs drained in %s", time.Since(start).Round(time.Millisecond))

	rows, distinct := e.rows()
	if rows != 2000 || distinct != 2000 {
		t.Fatalf("stock_prices: %d rows, %d distinct task ids; want 2000 and 2000", rows, distinct)
	}
	var matching, byRole int
	conn := e.db.Conn(t)
	if err := conn.QueryRow(context.Background(),
		"SELECT count(*) FILTER (WHERE task_id = ANY($1)), count(*) FILTER (WHERE written_by = $2) FROM stock_prices",
		ids, e.db.Role.String()).Scan(&matching, &byRole); err != nil {
		t.Fatal(err)
	}
	if matching != 2000 || byRole != 2000 {
		t.Fatalf("rows with an enqueued task id: %d, written by %s: %d; want 2000 each", matching, e.db.Role, byRole)
	}
	q := e.stats()["default"]
	if q.Completed != 2000 || q.Archived != 0 || q.Processed != 2000 || q.Failed != 0 {
		t.Fatalf("default queue: %+v; want 2000 completed and processed, nothing archived or failed", q)
	}

	metrics := get(t, "http://"+admin+"/metrics")
	if got := metricValue(t, metrics, `tickerq_jobs_total{outcome="success",type="quote:fetch"}`); got != 2000 {
		t.Fatalf("tickerq_jobs_total success = %v, want 2000", got)
	}
	if got := metricValue(t, metrics, `tickerq_pg_role_leaks_total`); got != 0 {
		t.Fatalf("tickerq_pg_role_leaks_total = %v, want 0", got)
	}
	if !strings.Contains(metrics, "tickerq_pg_role_leaks_total 0") {
		t.Fatal("/metrics lacks tickerq_pg_role_leaks_total")
	}
	if got := metricValue(t, metrics, `tickerq_quote_request_duration_seconds_count{outcome="200"}`); got != 2000 {
		t.Fatalf("quote requests answered 200 = %v, want 2000", got)
	}
	if got := metricValue(t, metrics, `pgxpool_max_conns`); got != postgres.DefaultMaxConns {
		t.Fatalf("pgxpool_max_conns = %v, want %d (the committer's flushers and a spare, whatever the concurrency)", got, postgres.DefaultMaxConns)
	}
	if got := metricValue(t, metrics, `tickerq_pg_batch_rows_sum`); got != 2000 {
		t.Fatalf("tickerq_pg_batch_rows_sum = %v, want 2000 (every row in some batch)", got)
	}
	batches := metricValue(t, metrics, `tickerq_pg_batch_rows_count`)
	t.Logf("2000 rows in %.0f batch transactions", batches)
	if batches < 1 || batches > 2000 {
		t.Fatalf("tickerq_pg_batch_rows_count = %v", batches)
	}
	if code := worker.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("worker exit code after SIGTERM = %d, want 0", code)
	}
}

// TestConcurrencyExperiment is the seeds' experiment: 50 jobs, each waiting
// 1 s on the quote API and 1 s in the database (a trigger installed in this
// test's database only makes every write statement take 1 s), on one worker
// with concurrency 50 and the default pool. Run one at a time they would
// take 100 s; run truly concurrently, ~2 s: the rows waiting while a batch
// is written share the next one.
//
// Not parallel: its wall time is the point.
func TestConcurrencyExperiment(t *testing.T) {
	e := newEnv(t)
	conn := e.slowInserts()
	quoteURL, _ := e.startQuoteserver("--latency", "1s")
	e.startWorker([]string{"QUOTE_API_URL=" + quoteURL}, "--concurrency", "50")

	start := time.Now()
	e.enqueueFile(symbols("C", 50))
	e.producer(nil, "wait", "--timeout", "2m")
	wall := time.Since(start)

	rows, _ := e.rows()
	if rows != 50 {
		t.Fatalf("rows = %d, want 50", rows)
	}
	var spread time.Duration
	if err := conn.QueryRow(context.Background(),
		"SELECT max(fetched_at) - min(fetched_at) FROM stock_prices").Scan(&spread); err != nil {
		t.Fatal(err)
	}
	t.Logf("50 jobs of 1 s HTTP + 1 s database: wall time %s (serially: 100 s); fetched_at spread %s", wall.Round(time.Millisecond), spread)
	if wall >= 4*time.Second {
		t.Fatalf("wall time %s, want under 4 s: the jobs did not run concurrently", wall)
	}
}

// TestSerialBaseline runs the experiment's jobs one at a time, to show what
// the concurrent run saves: each job costs its full 2 s.
func TestSerialBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	t.Parallel()
	e := newEnv(t)
	e.slowInserts()
	quoteURL, _ := e.startQuoteserver("--latency", "1s")
	e.startWorker([]string{"QUOTE_API_URL=" + quoteURL}, "--concurrency", "1")
	start := time.Now()
	e.enqueueFile(symbols("S", 3))
	e.producer(nil, "wait", "--timeout", "1m")
	wall := time.Since(start)
	t.Logf("3 jobs one at a time: wall time %s (%.2f s a job; 50 jobs would take ~%.0f s)",
		wall.Round(time.Millisecond), wall.Seconds()/3, wall.Seconds()/3*50)
	if wall < 6*time.Second {
		t.Fatalf("3 serial jobs took %s, less than their 6 s of waiting: the delays are not in effect", wall)
	}
}

// TestKill9 kills a worker (at the defaults: concurrency 100, the default
// pool) with SIGKILL in the middle of 5 000 jobs and starts another: asynq
// hands the orphaned tasks back once their lease expires, and each task
// still ends with exactly one row. Orphans whose rows had committed find
// them on their retry.
func TestKill9(t *testing.T) {
	t.Parallel()
	const n = 5000
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver("--latency", "50ms")
	first, _ := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL})

	e.enqueueFile(symbols("K", n))
	waitRows(t, e, n/4, time.Minute)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killed := time.Now()
	rowsAtKill, _ := e.rows()
	s := e.stats()["default"]
	t.Logf("SIGKILL with %d rows written; %d tasks active (orphaned), %d pending", rowsAtKill, s.Active, s.Pending)

	e.startWorker([]string{"QUOTE_API_URL=" + quoteURL})
	e.producer(nil, "wait", "--timeout", "4m")
	t.Logf("all %d done %s after the kill (orphans are recovered after asynq's 30 s lease expires; its recoverer runs every minute)",
		n, time.Since(killed).Round(time.Second))

	rows, distinct := e.rows()
	if rows != n || distinct != n {
		t.Fatalf("stock_prices: %d rows, %d distinct task ids; want %d and %d", rows, distinct, n, n)
	}
	if q := e.stats()["default"]; q.Archived != 0 || q.Completed != n {
		t.Fatalf("default queue: %+v; want %d completed, nothing archived", q, n)
	}
}

// TestOutageRecovery cuts Postgres, then the quote API, while jobs run:
// the jobs are retried and complete once the service is back.
func TestOutageRecovery(t *testing.T) {
	t.Parallel()
	for _, which := range []string{"postgres", "quote-api"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			quoteURL, _ := e.startQuoteserver()
			pgProxy, dbURL := testenv.ProxyURL(t, e.db.URL)
			quoteProxy := testenv.NewProxy(t, strings.TrimPrefix(quoteURL, "http://"))
			_, admin := e.startWorker([]string{
				"QUOTE_API_URL=http://" + quoteProxy.Addr(),
				"DATABASE_URL=" + dbURL,
				"WORKER_CONCURRENCY=10",
			})
			proxy := pgProxy
			if which == "quote-api" {
				proxy = quoteProxy
			}

			proxy.SetDown(true)
			e.enqueueFile(symbols("O", 100))
			// Let every job fail at least once while the service is down.
			deadline := time.Now().Add(30 * time.Second)
			for {
				q := e.stats()["default"]
				if q.Retry+q.Archived+q.Completed >= 100 || time.Now().After(deadline) {
					t.Logf("during the outage: %+v", q)
					if q.Archived != 0 || q.Completed != 0 {
						t.Fatalf("during the outage: %+v; want nothing archived or completed", q)
					}
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if which == "postgres" {
				if code := status(t, "http://"+admin+"/readyz"); code != http.StatusServiceUnavailable {
					t.Errorf("/readyz with Postgres down = %d, want 503", code)
				}
			}
			time.Sleep(2 * time.Second)
			proxy.SetDown(false)

			e.producer(nil, "wait", "--timeout", "3m")
			rows, distinct := e.rows()
			q := e.stats()["default"]
			if rows != 100 || distinct != 100 || q.Archived != 0 || q.Completed != 100 {
				t.Fatalf("after the outage: %d rows (%d distinct), queue %+v; want 100 rows, 100 completed, 0 archived", rows, distinct, q)
			}
		})
	}
}

// TestGracefulShutdown: SIGTERM while jobs are in flight lets them finish
// and exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver("--latency", "2s")
	w, _ := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL}, "--concurrency", "10", "--shutdown-timeout", "20s")
	e.enqueueFile(symbols("G", 10))
	deadline := time.Now().Add(20 * time.Second)
	for e.stats()["default"].Active < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("jobs never became active: %+v", e.stats()["default"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := w.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("worker exit code = %d, want 0", code)
	}
	rows, _ := e.rows()
	if q := e.stats()["default"]; rows != 10 || q.Completed != 10 {
		t.Fatalf("after SIGTERM: %d rows, queue %+v; want the 10 in-flight jobs finished", rows, q)
	}
}

// TestWorkerRefusesBadConfig: every bad setting, flag or role exits 2 with
// one line naming the problem and no secret, while Redis and Postgres are
// both unreachable: the worker checks them all before its first connection.
func TestWorkerRefusesBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	closed := []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/x", "REDIS_URL=redis://127.0.0.1:1/0"}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{`DB_ROLE=x"; DROP TABLE stock_prices; --`}, nil, "DB_ROLE"},
		{[]string{"DB_ROLE=Writer"}, nil, "DB_ROLE"},
		{[]string{"DB_ROLE=postgres"}, nil, "DB_ROLE"},
		{[]string{"DB_ROLE=pg_read_server_files"}, nil, "DB_ROLE"},
		{[]string{"DB_ROLE=" + strings.Repeat("a", 64)}, nil, "DB_ROLE"},
		{[]string{"DB_ROLE=a b"}, []string{"migrate"}, "DB_ROLE"},
		{[]string{"WORKER_CONCURRENCY=lots"}, nil, "concurrency"},
		{[]string{"WORKER_CONCURRENCY=0"}, nil, "concurrency"},
		{[]string{"WORKER_QUEUES=default=x"}, nil, "queues"},
		{[]string{"LOG_LEVEL=loud"}, nil, "LOG_LEVEL"},
		{[]string{"LOG_FORMAT=xml"}, nil, "LOG_FORMAT"},
		{[]string{"QUOTE_API_URL=ftp://x"}, nil, "QUOTE_API_URL"},
		{[]string{"QUOTE_API_URL=http://"}, nil, "QUOTE_API_URL"},
		{[]string{"QUOTE_API_URL=http://u:s3cret@h:99999"}, nil, "QUOTE_API_URL"},
		{[]string{"QUOTE_API_KEY=s3cret\x01"}, nil, "QUOTE_API_KEY"},
		{[]string{"QUOTE_API_KEY= s3cret"}, nil, "QUOTE_API_KEY"},
		{[]string{"QUOTE_RATE_LIMIT=fast"}, nil, "QUOTE_RATE_LIMIT"},
		{[]string{"ADMIN_ADDR=nohostport"}, nil, "ADMIN_ADDR"},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER=bogus"}, nil, "OTEL_TRACES_SAMPLER"},
		{nil, []string{"--concurrency", "0"}, "concurrency"},
		{[]string{"REDIS_URL=redis://:s3cret@127.0.0.1:99x/0"}, nil, "REDIS_URL"},
		{[]string{"DATABASE_URL=postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=abc"}, nil, "DATABASE_URL"},
		{[]string{"DATABASE_URL=postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=abc"}, []string{"migrate"}, "DATABASE_URL"},
		{nil, []string{"--no-such-flag"}, "unknown flag"},
	} {
		r := e.run("worker", nil, append(closed, tc.env...), tc.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "worker: ") ||
			!strings.Contains(lines[0], tc.want) || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("worker %v with %v and services down: exit %d, stderr %q; want exit 2 and one line naming %q, no secret",
				tc.args, tc.env, r.code, r.stderr, tc.want)
		}
	}
	if r := e.run("worker", nil, nil, "--help"); r.code != 0 || !strings.Contains(r.stdout, "--shutdown-timeout") {
		t.Errorf("worker --help: exit %d, stdout %q", r.code, r.stdout)
	}
}

// slowInserts makes every statement inserting into stock_prices in this
// test's database take 1 s, with a trigger: the database step of the seeds'
// experiment (a query that takes 1 s), with no hook in production code.
func (e *env) slowInserts() *pgx.Conn {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	if _, err := conn.Exec(context.Background(), `
		CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
		CREATE TRIGGER slow_insert BEFORE INSERT ON stock_prices
		FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();`); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

func waitRows(t *testing.T, e *env, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows, _ := e.rows()
		if rows >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d rows after %s, want %d", rows, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metricValue finds one sample in Prometheus text; 0 when absent.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	v, _, err := findSample(text, series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// findSample finds one sample (a series with its labels, if any) in
// Prometheus text, and says whether it is there.
func findSample(text, series string) (v float64, ok bool, err error) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false, nil
	}
	if v, err = strconv.ParseFloat(m[1], 64); err != nil {
		return 0, false, fmt.Errorf("metric %s: %w", series, err)
	}
	return v, true, nil
}
