package schedule

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics counts firings per entry for Prometheus. It implements Observer.
type Metrics struct {
	registry *prometheus.Registry
	enqueued *prometheus.CounterVec
	already  *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

// NewMetrics registers the schedule counters on a registry of their own.
func NewMetrics() *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"schedule"})
	}
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		enqueued: counter("tickerq_schedule_enqueued_total", "Tasks this replica enqueued, by schedule entry."),
		already:  counter("tickerq_schedule_already_enqueued_total", "Tasks another replica had already enqueued, by schedule entry."),
		skipped:  counter("tickerq_schedule_skipped_total", "Slots skipped because no replica began them within their misfire_grace, by schedule entry."),
		errors:   counter("tickerq_schedule_errors_total", "Tasks that could not be enqueued, by schedule entry."),
	}
	m.registry.MustRegister(m.enqueued, m.already, m.skipped, m.errors)
	return m
}

// ObserveFiring adds one firing's counts.
func (m *Metrics) ObserveFiring(schedule string, c Counts) {
	m.enqueued.WithLabelValues(schedule).Add(float64(c.Enqueued))
	m.already.WithLabelValues(schedule).Add(float64(c.AlreadyEnqueued))
	m.skipped.WithLabelValues(schedule).Add(float64(c.Skipped))
	m.errors.WithLabelValues(schedule).Add(float64(c.Errors))
}

// Handler serves the counters in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
