package quote_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tickerq/tickerq/internal/quote"
)

func TestQuoteCallIsAChildSpanWithoutSecrets(t *testing.T) {
	t.Parallel()
	const password = "pw-5ecret-91"
	var sawKey bool
	ts := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sawKey = r.Header.Get("X-Finnhub-Token") == apiKey
		_, _ = w.Write([]byte(okBody))
	})
	base := strings.Replace(ts.URL, "http://", "http://user:"+password+"@", 1)
	c := newClient(t, base, quote.Config{APIKey: apiKey})

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, job := tp.Tracer("test").Start(context.Background(), "process quote:fetch")
	if _, err := c.Quote(ctx, "AAPL"); err != nil {
		t.Fatal(err)
	}
	job.End()
	if !sawKey {
		t.Fatal("the server did not get the API key: the test checks nothing")
	}

	var calls []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().SpanID() != job.SpanContext().SpanID() {
			calls = append(calls, s)
		}
	}
	if len(calls) != 1 {
		t.Fatalf("%d spans besides the job's, want 1 quote call", len(calls))
	}
	call := calls[0]
	if call.Parent().SpanID() != job.SpanContext().SpanID() || call.SpanKind() != trace.SpanKindClient {
		t.Errorf("quote call span %q: parent %v kind %v, want the job span's child of kind client",
			call.Name(), call.Parent().SpanID(), call.SpanKind())
	}
	var urlFull string
	for _, kv := range call.Attributes() {
		v := kv.Value.String()
		if strings.Contains(v, apiKey) || strings.Contains(v, password) {
			t.Errorf("attribute %s = %q holds a secret", kv.Key, v)
		}
		if kv.Key == "url.full" {
			urlFull = v
		}
	}
	if !strings.Contains(urlFull, "symbol=AAPL") {
		t.Errorf("url.full = %q, want the request's URL", urlFull)
	}
	for _, ev := range call.Events() {
		for _, kv := range ev.Attributes {
			if v := kv.Value.String(); strings.Contains(v, apiKey) || strings.Contains(v, password) {
				t.Errorf("event %s attribute %s = %q holds a secret", ev.Name, kv.Key, v)
			}
		}
	}
}

// Not parallel: it installs a recording global provider, which a request
// made outside any span would otherwise use.
func TestQuoteCallOutsideASpanMakesNoSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(noop.NewTracerProvider())

	ts := newServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(okBody)) })
	c := newClient(t, ts.URL, quote.Config{APIKey: apiKey})
	if _, err := c.Quote(context.Background(), "AAPL"); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded for a call outside a job, want none (no root trace per call)", n)
	}
	// The same provider does record under a span: the check above is not
	// vacuous.
	ctx, job := tp.Tracer("test").Start(context.Background(), "job")
	if _, err := c.Quote(ctx, "AAPL"); err != nil {
		t.Fatal(err)
	}
	job.End()
	if n := len(rec.Ended()); n != 2 {
		t.Errorf("%d spans recorded under a job, want 2 (the job and its call)", n)
	}
}
