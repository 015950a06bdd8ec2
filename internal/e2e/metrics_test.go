package e2e

import (
	"strings"
	"testing"
)

// TestMetricsAddUp scrapes the worker's /metrics after 500 jobs: our job
// counter, our quote-call histogram and asynq's own queue metrics must all
// count the same 500.
func TestMetricsAddUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	_, admin := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, "WORKER_CONCURRENCY=20"})
	e.enqueueFile(symbols("M", 500))
	e.producer(nil, "wait", "--timeout", "2m")

	text := get(t, "http://"+admin+"/metrics")
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`tickerq_jobs_total{outcome="success",type="quote:fetch"}`, 500},
		{`tickerq_job_duration_seconds_count{outcome="success",type="quote:fetch"}`, 500},
		{`tickerq_quote_request_duration_seconds_count{outcome="200"}`, 500},
		{`asynq_tasks_processed_total{queue="default"}`, 500},
		{`asynq_tasks_failed_total{queue="default"}`, 0},
		{`asynq_tasks_enqueued_total{queue="default",state="completed"}`, 500},
		{`asynq_tasks_enqueued_total{queue="default",state="archived"}`, 0},
		{`tickerq_pg_role_leaks_total`, 0},
	} {
		if !strings.Contains(text, tc.series+" ") {
			t.Errorf("/metrics lacks %s", tc.series)
			continue
		}
		if got := metricValue(t, text, tc.series); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.series, got, tc.want)
		}
	}
	for _, name := range []string{"pgxpool_acquire_count", "pgxpool_max_conns", "asynq_queue_latency_seconds", "asynq_queue_size"} {
		if !strings.Contains(text, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
