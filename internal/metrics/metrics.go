// Package metrics defines tickerq's Prometheus metrics on a registry of its
// own: jobs by type and outcome, job duration, quote-call duration, the
// group-committed writes (rows per batch, flush duration, commit wait,
// rejected rows), the shared quote rate limit (permits, waits, put-back
// jobs, upstream pauses, its Redis calls) and the Postgres pool's
// statistics.
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/IBM/pgxpoolprometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tickerq/tickerq/tasks"
)

// Metrics holds the worker's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	registry      *prometheus.Registry
	jobs          *prometheus.CounterVec
	jobDuration   *prometheus.HistogramVec
	quoteDuration *prometheus.HistogramVec

	batchRows     prometheus.Histogram
	flushDuration *prometheus.HistogramVec
	commitWait    prometheus.Histogram
	rejectedRows  prometheus.Counter

	permits      prometheus.Counter
	limitWait    prometheus.Histogram
	throttled    *prometheus.CounterVec
	pauses       *prometheus.CounterVec
	limiterCalls *prometheus.CounterVec
}

// DB is what the metrics read of the database handle.
type DB interface {
	pgxpoolprometheus.Stater
	RoleLeaks() int64
}

// New registers tickerq's metrics, Go and process metrics, and, when db is
// not nil, the pgxpool statistics (pgxpool_* series) and the role guard's
// count.
func New(db DB) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickerq_jobs_total",
			Help: "Jobs processed, by task type and outcome (success, retry, rate_limited, archived, stale).",
		}, []string{"type", "outcome"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tickerq_job_duration_seconds",
			Help:    "Wall time of one job attempt, by task type and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"type", "outcome"}),
		quoteDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tickerq_quote_request_duration_seconds",
			Help:    "Wall time of one quote API request, by outcome (HTTP status or error).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"outcome"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickerq_pg_batch_rows",
			Help:    "Rows per group-committed batch transaction (every attempt, including the halves written after a batch was rejected).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}),
		flushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tickerq_pg_flush_duration_seconds",
			Help:    "Wall time of one batch transaction, by outcome (committed, rejected: refused for its data, error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15), // 0.5 ms .. 8 s
		}, []string{"outcome"}),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickerq_pg_commit_wait_seconds",
			Help:    "Time a job waits from handing its row to the committer until the transaction holding it has committed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
		rejectedRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickerq_pg_rows_rejected_total",
			Help: "Rows the database refused for their data, found one by one after their batch was rejected; only their own jobs fail.",
		}),
		permits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickerq_ratelimit_permits_total",
			Help: "Quote API permits this worker got from the shared rate limit (QUOTE_RATE_LIMIT).",
		}),
		limitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickerq_ratelimit_wait_seconds",
			Help:    "Time a job waited in its worker slot for a permit or the end of an upstream pause before sending; its count is the number of such waits.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms .. 32 s
		}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickerq_ratelimit_throttled_total",
			Help: "Jobs put back in the queue to wait for their turn (reason rate) or an upstream pause (reason pause); not failures.",
		}, []string{"reason"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickerq_ratelimit_upstream_pauses_total",
			Help: "Upstream pauses: 429s with Retry-After this worker received (source response), and pauses other workers announced that extended this one's (source peer).",
		}, []string{"source"}),
		limiterCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickerq_ratelimit_redis_calls_total",
			Help: "Redis calls the rate limiter made, by operation (allow, book, pause, refresh) and result (ok, error).",
		}, []string{"op", "result"}),
	}
	m.registry.MustRegister(m.jobs, m.jobDuration, m.quoteDuration,
		m.batchRows, m.flushDuration, m.commitWait, m.rejectedRows,
		m.permits, m.limitWait, m.throttled, m.pauses, m.limiterCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db != nil {
		m.registry.MustRegister(pgxpoolprometheus.NewCollector(db, nil),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tickerq_pg_role_leaks_total",
				Help: "Pooled connections destroyed because they carried a role past their transaction (should stay 0).",
			}, func() float64 { return float64(db.RoleLeaks()) }))
	}
	return m
}

// Registry returns the registry, for further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveJob records one finished job attempt.
func (m *Metrics) ObserveJob(taskType, outcome string, d time.Duration) {
	m.jobs.WithLabelValues(taskType, outcome).Inc()
	m.jobDuration.WithLabelValues(taskType, outcome).Observe(d.Seconds())
}

// ObserveQuote records one quote API request.
func (m *Metrics) ObserveQuote(outcome string, d time.Duration) {
	m.quoteDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// ObserveFlush records one batch transaction (postgres.BatchObserver).
func (m *Metrics) ObserveFlush(rows int, d time.Duration, err error) {
	outcome := "committed"
	switch {
	case errors.Is(err, tasks.ErrRejected):
		outcome = "rejected"
	case err != nil:
		outcome = "error"
	}
	m.batchRows.Observe(float64(rows))
	m.flushDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// ObserveCommitWait records how long a job waited for its commit
// (postgres.BatchObserver).
func (m *Metrics) ObserveCommitWait(d time.Duration) { m.commitWait.Observe(d.Seconds()) }

// ObserveRejectedRow counts a row refused for its data
// (postgres.BatchObserver).
func (m *Metrics) ObserveRejectedRow() { m.rejectedRows.Inc() }

// ObservePermits counts permits granted (ratelimit.Observer).
func (m *Metrics) ObservePermits(n int) { m.permits.Add(float64(n)) }

// ObserveWait records a job's wait in its slot (ratelimit.Observer).
func (m *Metrics) ObserveWait(d time.Duration) { m.limitWait.Observe(d.Seconds()) }

// ObserveThrottled counts a job put back (ratelimit.Observer).
func (m *Metrics) ObserveThrottled(paused bool) {
	reason := "rate"
	if paused {
		reason = "pause"
	}
	m.throttled.WithLabelValues(reason).Inc()
}

// ObservePause counts an upstream pause (ratelimit.Observer).
func (m *Metrics) ObservePause(fromPeer bool) {
	source := "response"
	if fromPeer {
		source = "peer"
	}
	m.pauses.WithLabelValues(source).Inc()
}

// ObserveRedisCall counts one of the limiter's Redis calls
// (ratelimit.Observer).
func (m *Metrics) ObserveRedisCall(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.limiterCalls.WithLabelValues(op, result).Inc()
}

// RegisterCommitter adds a gauge of the rows the committer holds.
func (m *Metrics) RegisterCommitter(pending func() int) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tickerq_pg_commit_pending_rows",
		Help: "Rows handed to the committer and not yet committed: waiting for a free connection or being written.",
	}, func() float64 { return float64(pending()) }))
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
