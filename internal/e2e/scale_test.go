package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/postgres"
)

// connSampler records the most connections the server holds to one
// database, and to all of them, while a test runs.
type connSampler struct {
	mu             sync.Mutex
	ourMax, allMax int
	stop           chan struct{}
	done           chan struct{}
}

func (e *env) sampleConnections(t *testing.T) *connSampler {
	t.Helper()
	conn := e.db.Conn(t)
	s := &connSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			var ours, all int
			if err := conn.QueryRow(context.Background(), `
				SELECT count(*) FILTER (WHERE datname = $1 AND pid <> pg_backend_pid()), count(*)
				  FROM pg_stat_activity WHERE backend_type = 'client backend'`, e.db.Name).Scan(&ours, &all); err == nil {
				s.mu.Lock()
				s.ourMax, s.allMax = max(s.ourMax, ours), max(s.allMax, all)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *connSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *connSampler) peaks() (ours, all int) {
	s.finish()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ourMax, s.allMax
}

// TestThreeWorkersStockPostgres: three workers at concurrency 300 each work
// off 20 000 jobs that each wait 100 ms on the quote API, so 900 are in
// flight at once. Before group commit each held a connection and a stock
// Postgres (100 connections) refused them; now each worker opens at most
// its pool's few.
//
// Not parallel: 900 jobs in flight are the point.
func TestThreeWorkersStockPostgres(t *testing.T) {
	const workers, concurrency, n = 3, 300, 20000
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver("--latency", "100ms")
	ids := e.enqueueFile(symbols("W", n))
	conns := e.sampleConnections(t)
	start := time.Now()
	var procs []*proc
	for range workers {
		p, _ := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, fmt.Sprintf("WORKER_CONCURRENCY=%d", concurrency)})
		procs = append(procs, p)
	}
	e.producer(nil, "wait", "--timeout", "4m")
	ours, all := conns.peaks()
	t.Logf("%d workers × concurrency %d: %d jobs in %s; at most %d connections to the test database (%d on the whole server, other tests included)",
		workers, concurrency, n, time.Since(start).Round(time.Millisecond), ours, all)

	rows, distinct := e.rows()
	q := e.stats()["default"]
	if rows != n || distinct != n || q.Completed != n || q.Failed != 0 || q.Retry != 0 || q.Archived != 0 {
		t.Fatalf("%d rows (%d distinct), queue %+v; want %d rows and completed, nothing failed, retried or archived", rows, distinct, q, n)
	}
	if ours > workers*postgres.DefaultMaxConns {
		t.Fatalf("%d connections to the test database, want at most %d (%d workers × %d)", ours, workers*postgres.DefaultMaxConns, workers, postgres.DefaultMaxConns)
	}
	var matching int
	if err := e.db.Conn(t).QueryRow(context.Background(),
		"SELECT count(*) FROM stock_prices WHERE task_id = ANY($1)", ids).Scan(&matching); err != nil {
		t.Fatal(err)
	}
	if matching != n {
		t.Fatalf("%d rows carry an enqueued task id, want %d", matching, n)
	}
	for _, p := range procs {
		if strings.Contains(p.logs.String(), "SQLSTATE 53300") {
			t.Fatalf("a worker logged SQLSTATE 53300 (too many clients)")
		}
		if code := p.stop(t, time.Minute); code != 0 {
			t.Fatalf("worker exit code %d after SIGTERM", code)
		}
	}
}

// TestConcurrency1000: one worker at WORKER_CONCURRENCY=1000 drains 2 000
// jobs of 200 ms each on the default pool: no connection error, no retry,
// and the jobs overlap (a wide sanity bound on the wall time: one at a time
// they would take 400 s).
func TestConcurrency1000(t *testing.T) {
	t.Parallel()
	const n = 2000
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver("--latency", "200ms")
	w, admin := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, "WORKER_CONCURRENCY=1000"})
	conns := e.sampleConnections(t)
	start := time.Now()
	e.enqueueFile(symbols("H", n))
	e.producer(nil, "wait", "--timeout", "2m")
	wall := time.Since(start)
	ours, _ := conns.peaks()
	t.Logf("%d jobs of 200 ms at concurrency 1000: %s (ideal 0.4 s); at most %d connections to the test database", n, wall.Round(time.Millisecond), ours)

	rows, _ := e.rows()
	q := e.stats()["default"]
	if rows != n || q.Completed != n || q.Failed != 0 || q.Retry != 0 {
		t.Fatalf("%d rows, queue %+v; want %d rows and completed, nothing failed or retried", rows, q, n)
	}
	metrics := get(t, "http://"+admin+"/metrics")
	if got := metricValue(t, metrics, "pgxpool_max_conns"); got != postgres.DefaultMaxConns {
		t.Fatalf("pgxpool_max_conns = %v at concurrency 1000, want %d", got, postgres.DefaultMaxConns)
	}
	if ours > postgres.DefaultMaxConns {
		t.Fatalf("%d connections to the test database, want at most %d", ours, postgres.DefaultMaxConns)
	}
	if strings.Contains(w.logs.String(), "SQLSTATE 53300") {
		t.Fatal("the worker logged SQLSTATE 53300 (too many clients)")
	}
	if wall > 60*time.Second {
		t.Fatalf("2000 jobs of 200 ms took %s at concurrency 1000: they did not overlap", wall)
	}
}

// TestReadyzWhileEveryWriterIsBusy: with every batch writer stuck in a slow
// statement, /readyz still answers at once, on the pool's spare connection.
func TestReadyzWhileEveryWriterIsBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.slowInserts() // every insert statement takes 1 s
	quoteURL, _ := e.startQuoteserver()
	_, admin := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, "WORKER_CONCURRENCY=200"})
	e.enqueueFile(symbols("Z", 200))

	busy := postgres.DefaultMaxConns - 1
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, get(t, "http://"+admin+"/metrics"), "pgxpool_acquired_conns") < float64(busy) {
		if time.Now().After(deadline) {
			t.Fatalf("the %d batch writers never were all busy", busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	code := status(t, "http://"+admin+"/readyz")
	took := time.Since(start)
	t.Logf("/readyz with %d writers busy: %d in %s", busy, code, took.Round(time.Millisecond))
	if code != http.StatusOK || took > 900*time.Millisecond {
		t.Fatalf("/readyz with every writer busy: %d after %s; want 200 before the writers' 1 s statements end", code, took)
	}
	e.producer(nil, "wait", "--timeout", "2m")
	if rows, _ := e.rows(); rows != 200 {
		t.Fatalf("%d rows, want 200", rows)
	}
}
