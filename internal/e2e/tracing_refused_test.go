package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// With tracing on and a collector that refuses connections, spans are not
// dropped without a word: producer enqueue says so in one stderr line when
// it exits, and the worker logs the first failed export at once and then
// counts the others (one line a minute at most; here the line at stop),
// naming the endpoint without its credentials.
func TestTracingCollectorRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := refusedAddr(t)
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://user:s3cret@" + addr, "OTEL_BSP_SCHEDULE_DELAY=50"}
	const first, more = "tracing: could not export spans", "of spans failed since the last line"

	quoteURL, _ := e.startQuoteserver()
	worker, _ := e.startWorker(append([]string{"QUOTE_API_URL=" + quoteURL}, otel...))

	r := e.run("producer", strings.NewReader("GOOG\n"), otel, "enqueue", "--file", "-")
	if r.code != 0 {
		t.Fatalf("producer enqueue: exit %d\n%s", r.code, r.stderr)
	}
	var warned []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.Contains(l, "tracing: ") && !strings.Contains(l, "tracing: on") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 || !strings.HasPrefix(warned[0], "producer: warning: "+first+" to http://"+addr) ||
		!strings.Contains(warned[0], "connection refused") {
		t.Errorf("producer enqueue's tracing lines: %q; want one warning naming http://%s and the refusal", warned, addr)
	}

	count := func(s string) int {
		n := 0
		for _, l := range logLines(worker.logs.String()) {
			if strings.Contains(l.Message, s) {
				n++
			}
		}
		return n
	}
	e.producer(nil, "wait", "--timeout", "1m")
	testenv.WaitUntil(t, "the worker says its first export failed", time.Minute, func() bool { return count(first) == 1 })
	// More jobs, more batches that fail: each was a line before.
	for i := range 3 {
		e.enqueueFile(symbols("R"+string(rune('A'+i)), 2))
		e.producer(nil, "wait", "--timeout", "1m")
	}
	if code := worker.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("worker exit %d", code)
	}
	if n, m := count(first), count(more); n != 1 || m != 1 {
		t.Errorf("worker: %d first-failure lines and %d counting lines, want 1 and 1 (at stop)\n%s", n, m, worker.logs.String())
	}
	if strings.Contains(worker.logs.String()+r.stderr, "s3cret") {
		t.Error("the collector's credentials were shown")
	}
}
