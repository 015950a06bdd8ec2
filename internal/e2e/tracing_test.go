package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/internal/testenv"
)

// Secrets the traced programs are given, which no span may carry.
const (
	traceAPIKey     = "TQ-TRACE-KEY-7f3a9c"
	traceDBPassword = "S3CRET"
)

// TestTracingEndToEnd: producer and worker export to an OTLP receiver in
// the test; each of 20 tasks is one trace, from its enqueue through the
// job, the quote call and the wait for its batch, and the batch spans that
// commit the rows link back to those traces. No span carries the API key
// or the database password. With TICKERQ_WRITE_TRACE_PNG=1 it also draws
// one trace to trace-waterfall.png (see writeWaterfall for where).
func TestTracingEndToEnd(t *testing.T) {
	t.Parallel()
	const n = 20
	e := newEnv(t)
	recv := newOTLPReceiver(t)
	// Trust auth ignores the password: it is there to be looked for.
	u, err := url.Parse(e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), traceDBPassword)
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.url, "OTEL_BSP_SCHEDULE_DELAY=100"}

	quoteURL, _ := e.startQuoteserver("--api-key", traceAPIKey, "--latency", "20ms")
	worker, _ := e.startWorker(append([]string{
		"QUOTE_API_URL=" + quoteURL, "QUOTE_API_KEY=" + traceAPIKey, "DATABASE_URL=" + u.String(),
	}, otel...))
	in := strings.NewReader(strings.Join(symbols("T", n), "\n") + "\n")
	r := e.run("producer", in, otel, "enqueue", "--file", "-")
	if r.code != 0 {
		t.Fatalf("producer enqueue: exit %d\n%s", r.code, r.stderr)
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		id, _, _ := strings.Cut(line, "\t")
		ids[id] = true
	}
	if len(ids) != n {
		t.Fatalf("producer printed %d task ids, want %d:\n%s", len(ids), n, r.stdout)
	}
	e.producer(nil, "wait", "--timeout", "2m")
	if rows, _ := e.rows(); rows != n {
		t.Fatalf("%d rows, want %d", rows, n)
	}
	if code := worker.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("worker exit %d", code)
	}
	_, bad := recv.requests()
	if len(bad) > 0 {
		t.Fatalf("receiver refused %d requests, first: %s", len(bad), bad[0])
	}
	spans := recv.spans()
	t.Logf("%d spans received", len(spans))

	checkNoSecrets(t, spans)
	roots := checkEnqueueSpans(t, spans, ids)
	chains := checkJobTraces(t, spans, roots)
	checkJobLogs(t, worker.logs.String(), chains)
	batches, sql := map[*span]bool{}, 0
	for _, c := range chains {
		if !batches[c.batch] {
			batches[c.batch], sql = true, sql+len(c.sql)
		}
	}
	t.Logf("%d traces, each rooted at %q -> %q -> HTTP client span + %q; %d committed %q spans link them, with %d otelpgx child spans (pool.acquire, batch start; the statements below those); job log lines carry the job span's ids",
		len(chains), queue.EnqueueSpanName, "process quote:fetch", "commit wait", len(batches), "commit batch", sql)
	writeWaterfall(t, spans, chains)
}

// checkNoSecrets fails if any attribute value anywhere holds a secret, or
// a URL carries a password.
func checkNoSecrets(t *testing.T, spans []*span) {
	t.Helper()
	for _, s := range spans {
		for _, v := range s.values {
			if strings.Contains(v, traceAPIKey) || strings.Contains(v, traceDBPassword) {
				t.Errorf("span %q (%s) carries a secret: %q", s.Name, s.Service, v)
			}
		}
		if full := s.Attrs["url.full"]; full != "" {
			if u, err := url.Parse(full); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					t.Errorf("span %q: url.full %q has a password", s.Name, full)
				}
			}
		}
	}
}

// checkEnqueueSpans checks one root producer span per task id and returns
// them by trace id.
func checkEnqueueSpans(t *testing.T, spans []*span, ids map[string]bool) map[string]*span {
	t.Helper()
	roots := map[string]*span{}
	for _, s := range spans {
		if s.Name != "enqueue quote:fetch" {
			continue
		}
		if s.Parent != "" || s.Kind != "SPAN_KIND_PRODUCER" || s.Service != "tickerq-producer" {
			t.Errorf("enqueue span: parent %q kind %s service %q; want a root producer span of tickerq-producer", s.Parent, s.Kind, s.Service)
		}
		if a := s.Attrs; a["messaging.system"] != "asynq" || a["messaging.destination.name"] != "default" ||
			a["tickerq.outcome"] != "enqueued" || !ids[a["messaging.message.id"]] || a["tickerq.symbol"] == "" {
			t.Errorf("enqueue span attributes %v", a)
		}
		if roots[s.Trace] != nil {
			t.Errorf("trace %s has two enqueue spans", s.Trace)
		}
		roots[s.Trace] = s
	}
	if len(roots) != len(ids) {
		t.Fatalf("%d traces rooted at an enqueue span, want %d (one per task)", len(roots), len(ids))
	}
	return roots
}

// chain is one task's spans, from the enqueue to the batch.
type chain struct {
	enqueue, job, quote, wait, batch *span
	sql                              []*span
}

// checkJobTraces checks that each trace's job span is the enqueue span's
// child, with a quote call and a batch wait below it, and that a batch
// span links to it; it returns each trace's chain.
func checkJobTraces(t *testing.T, spans []*span, roots map[string]*span) map[string]*chain {
	t.Helper()
	children := map[string][]*span{}
	linked := map[string]*span{} // span id → batch span linking to it
	for _, s := range spans {
		if s.Parent != "" {
			children[s.Parent] = append(children[s.Parent], s)
		}
		if s.Name == "commit batch" {
			if s.Parent != "" {
				t.Errorf("commit batch span has parent %s: want a root", s.Parent)
			}
			if s.Attrs["db.system.name"] != "postgresql" || s.Attrs["tickerq.batch.rows"] == "" || s.Attrs["tickerq.db.role"] == "" {
				t.Errorf("commit batch attributes %v", s.Attrs)
			}
			// Only a batch that committed: a split attempt that failed
			// links the same jobs but did not write their rows.
			for _, l := range s.Links {
				if s.Status == "" {
					linked[l.ID] = s
				}
			}
		}
	}
	chains := map[string]*chain{}
	for trace, root := range roots {
		c := &chain{enqueue: root}
		for _, s := range children[root.ID] {
			if s.Name == "process quote:fetch" {
				c.job = s
			}
		}
		if c.job == nil {
			t.Errorf("trace %s: no process quote:fetch child of the enqueue span", trace)
			continue
		}
		if c.job.Kind != "SPAN_KIND_CONSUMER" || c.job.Service != "tickerq-worker" || c.job.Attrs["tickerq.outcome"] != "success" ||
			c.job.Attrs["messaging.message.id"] != root.Attrs["messaging.message.id"] {
			t.Errorf("trace %s: job span kind %s service %q attributes %v", trace, c.job.Kind, c.job.Service, c.job.Attrs)
		}
		for _, s := range children[c.job.ID] {
			switch {
			case s.Kind == "SPAN_KIND_CLIENT" && s.Attrs["http.request.method"] != "":
				c.quote = s
			case s.Name == "commit wait":
				c.wait = s
			}
		}
		if c.quote == nil || c.wait == nil {
			t.Errorf("trace %s: job span's children %v: want an HTTP client span and a commit wait", trace, names(children[c.job.ID]))
			continue
		}
		c.batch = linked[c.wait.ID]
		if c.batch == nil {
			t.Errorf("trace %s: no committed commit batch span links to its commit wait span", trace)
			continue
		}
		c.sql = children[c.batch.ID]
		if len(c.sql) == 0 {
			t.Errorf("trace %s: its commit batch span has no SQL children", trace)
		}
		chains[trace] = c
	}
	return chains
}

// checkJobLogs checks that each job's log line carries its trace and span.
func checkJobLogs(t *testing.T, logs string, chains map[string]*chain) {
	t.Helper()
	byTask := map[string]string{} // task id → "trace/span" of its job line
	for _, line := range strings.Split(logs, "\n") {
		var ev struct {
			TaskID  string `json:"task_id"`
			Outcome string `json:"outcome"`
			TraceID string `json:"trace_id"`
			SpanID  string `json:"span_id"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.TaskID != "" && ev.Outcome != "" {
			byTask[ev.TaskID] = ev.TraceID + "/" + ev.SpanID
		}
	}
	for trace, c := range chains {
		id := c.job.Attrs["messaging.message.id"]
		if got, want := byTask[id], trace+"/"+c.job.ID; got != want {
			t.Errorf("task %s: job log line has trace/span %q, want %q", id, got, want)
		}
	}
}

func names(spans []*span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

// TestTracingOff: with tracing switched off, though an endpoint is set,
// nothing is exported and tasks carry no trace context; with no OTEL_*
// variable at all neither.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recv := newOTLPReceiver(t)
	endpoint := "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.url
	e.run("producer", nil, nil, "enqueue", "OFFA") // no OTEL_* at all
	for _, off := range []string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none"} {
		if r := e.run("producer", nil, []string{endpoint, off, "OTEL_BSP_SCHEDULE_DELAY=100"}, "enqueue", "OFF"+off[5:6]); r.code != 0 {
			t.Fatalf("producer enqueue with %s: exit %d\n%s", off, r.code, r.stderr)
		}
	}
	inspector := asynq.NewInspector(testenv.RedisClientOpt(t, e.redis))
	defer inspector.Close()
	pending, err := inspector.ListPendingTasks("default")
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 {
		t.Fatalf("%d pending tasks, want 3", len(pending))
	}
	for _, ti := range pending {
		if _, ok := ti.Headers["traceparent"]; ok || ti.Headers["tracestate"] != "" {
			t.Errorf("task %s has headers %v: want no trace context with tracing off", ti.ID, ti.Headers)
		}
	}

	quoteURL, _ := e.startQuoteserver()
	worker, _ := e.startWorker([]string{"QUOTE_API_URL=" + quoteURL, endpoint, "OTEL_SDK_DISABLED=true", "OTEL_BSP_SCHEDULE_DELAY=100"})
	e.producer(nil, "wait", "--timeout", "1m")
	if code := worker.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("worker exit %d", code)
	}
	if n, bad := recv.requests(); n != 0 || len(bad) != 0 {
		t.Errorf("receiver got %d export requests (%d refused) with tracing off, want 0", n, len(bad))
	}
	if strings.Contains(worker.logs.String(), `"trace_id"`) {
		t.Errorf("worker logged a trace_id with tracing off")
	}
}
