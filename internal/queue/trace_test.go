package queue

import (
	"testing"

	"github.com/tickerq/tickerq/internal/testenv"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestEnqueueSpans: each enqueued symbol gets its own root producer span,
// whose trace context is in the task's headers; a symbol whose ID exists
// gets one too, saying so.
func TestEnqueueSpans(t *testing.T) {
	rec := testenv.GlobalSpanRecorder(t)
	b := setup(t)
	symbols := []string{"AAA", "BBB", "CCC"}
	cfg := EnqueueConfig{IDPrefix: "trace"}
	if _, err := EnqueueAll(t.Context(), b.client, symbols[:1], cfg); err != nil {
		t.Fatal(err)
	}
	res, err := EnqueueAll(t.Context(), b.client, symbols, cfg)
	if err != nil {
		t.Fatal(err)
	}

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4 (one per call)", len(spans))
	}
	traces := map[trace.TraceID]bool{}
	bySymbol := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.Name() != EnqueueSpanName || s.SpanKind() != trace.SpanKindProducer || s.Parent().IsValid() {
			t.Errorf("span %q kind %s parent %v: want a root %q producer span", s.Name(), s.SpanKind(), s.Parent().SpanID(), EnqueueSpanName)
		}
		traces[s.SpanContext().TraceID()] = true
		a := attrs(s)
		if a["messaging.system"] != "asynq" || a["messaging.destination.name"] != DefaultQueue {
			t.Errorf("span attributes %v: want messaging.system asynq, destination %s", a, DefaultQueue)
		}
		bySymbol[a["tickerq.symbol"]+"/"+a["tickerq.outcome"]] = s
	}
	if len(traces) != 4 {
		t.Errorf("%d traces, want 4: each task its own", len(traces))
	}
	if bySymbol["AAA/already_enqueued"] == nil || bySymbol["AAA/enqueued"] == nil || bySymbol["CCC/enqueued"] == nil {
		t.Errorf("spans by symbol/outcome: %v", keys(bySymbol))
	}

	for _, r := range res[1:] {
		ti, err := b.inspector.GetTaskInfo(r.Queue, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		s := bySymbol[r.Symbol+"/enqueued"]
		if s == nil {
			t.Fatalf("no enqueued span for %s", r.Symbol)
		}
		if got := attrs(s)["messaging.message.id"]; got != r.ID {
			t.Errorf("%s: messaging.message.id %q, want %q", r.Symbol, got, r.ID)
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.MapCarrier(ti.Headers)))
		if sc.TraceID() != s.SpanContext().TraceID() || sc.SpanID() != s.SpanContext().SpanID() {
			t.Errorf("%s: task headers %v carry %s/%s, want the enqueue span %s/%s", r.Symbol, ti.Headers,
				sc.TraceID(), sc.SpanID(), s.SpanContext().TraceID(), s.SpanContext().SpanID())
		}
	}
}

// TestEnqueueSpanFailed: a task that could not be enqueued ends its span
// with an error status.
func TestEnqueueSpanFailed(t *testing.T) {
	rec := testenv.GlobalSpanRecorder(t)
	b := setup(t)
	_ = b.client.Close() // every call now fails before reaching Redis
	if _, err := EnqueueAll(t.Context(), b.client, []string{"AAA"}, EnqueueConfig{}); err == nil {
		t.Fatal("EnqueueAll on a closed client: no error")
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	if a := attrs(spans[0]); a["tickerq.outcome"] != "failed" || spans[0].Status().Code != codes.Error {
		t.Errorf("span attributes %v, status %v: want outcome failed, status Error", a, spans[0].Status())
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
