package schedule

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/internal/testenv"
)

// TestFireSpans: a firing gives each task a root enqueue span naming the
// entry, whose trace context the task carries. Not parallel: it sets
// OpenTelemetry's globals (parallel tests run after it returned).
func TestFireSpans(t *testing.T) {
	rec := testenv.GlobalSpanRecorder(t)

	w := newWorld(t)
	e := symbolEntry("traced", 10*time.Second, 3)
	slot := e.RawPrev(time.Now())
	if _, err := w.replica(nil, SystemClock{}).Fire(t.Context(), e, slot); err != nil {
		t.Fatal(err)
	}
	ids := w.pendingIDs("default")
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	for _, s := range spans {
		a := map[string]string{}
		for _, kv := range s.Attributes() {
			a[string(kv.Key)] = kv.Value.String()
		}
		if s.Name() != queue.EnqueueSpanName || s.SpanKind() != trace.SpanKindProducer || s.Parent().IsValid() ||
			a["tickerq.schedule"] != "traced" || a["tickerq.outcome"] != "enqueued" {
			t.Errorf("span %q kind %s parent valid %v attributes %v", s.Name(), s.SpanKind(), s.Parent().IsValid(), a)
		}
		ti := ids[a["messaging.message.id"]]
		if ti == nil {
			t.Fatalf("span's messaging.message.id %q: no such task", a["messaging.message.id"])
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.MapCarrier(ti.Headers)))
		if sc.SpanID() != s.SpanContext().SpanID() {
			t.Errorf("task %s headers %v: want the span %s", ti.ID, ti.Headers, s.SpanContext().SpanID())
		}
	}
}
