// Package metrics defines tickerq's Prometheus metrics on a registry of its
// own: jobs by type and outcome, job duration, quote-call duration, and the
// Postgres pool's statistics.
package metrics

import (
	"net/http"
	"time"

	"github.com/IBM/pgxpoolprometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the worker's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	registry      *prometheus.Registry
	jobs          *prometheus.CounterVec
	jobDuration   *prometheus.HistogramVec
	quoteDuration *prometheus.HistogramVec
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
			Help: "Jobs processed, by task type and outcome (success, retry, rate_limited, archived).",
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
	}
	m.registry.MustRegister(m.jobs, m.jobDuration, m.quoteDuration,
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

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
