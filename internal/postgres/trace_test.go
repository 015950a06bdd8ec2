package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// tracedSave is a save made under a job span of its own.
type tracedSave struct {
	save
	job trace.Span
}

// tracedBatch writes saves, each under its own recorded job span, as one
// batch behind a BLOCK row (see oneBatch), on a committer whose DB traces
// into a span recorder. It returns the recorder once every span has ended.
func tracedBatch(t *testing.T, saves []*tracedSave) (*tracetest.SpanRecorder, *postgres.DB, *recorder) {
	t.Helper()
	tdb := testenv.NewDatabase(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, postgres.Config{URL: tdb.URL, Role: tdb.Role, MaxConns: 4, Logger: zerolog.Nop(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	c, obs := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})

	b := newBlocker(t, tdb)
	blockSave, blockDone := b.hold(c) // untraced: makes no batch span
	var wg sync.WaitGroup
	for _, s := range saves {
		jctx, job := tp.Tracer("test").Start(context.Background(), "job")
		s.job = job
		wg.Go(func() {
			defer job.End()
			s.inserted, s.err = c.SavePrice(jctx, s.taskID, s.quote)
		})
	}
	waitPending(t, c, 1+len(saves))
	b.release()
	<-blockDone
	wg.Wait()
	if blockSave.err != nil {
		t.Fatalf("BLOCK row: %v", blockSave.err)
	}
	return rec, db, obs
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// checkNoData fails t when an attribute, event or status of any span holds
// one of the values the SQL carried as parameters.
func checkNoData(t *testing.T, spans []sdktrace.ReadOnlySpan, values ...string) {
	t.Helper()
	for _, s := range spans {
		texts := []string{s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, kv.Value.String())
		}
		for _, ev := range s.Events() {
			texts = append(texts, ev.Name)
			for _, kv := range ev.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
		for _, text := range texts {
			for _, v := range values {
				if strings.Contains(text, v) {
					t.Errorf("span %q records %q: %q", s.Name(), v, text)
				}
			}
		}
	}
}

func TestCommitterBatchSpanLinksEveryJob(t *testing.T) {
	t.Parallel()
	const n = 12
	const price = "98765.4321" // no span may hold it
	now := time.Now().Truncate(time.Second)
	saves := make([]*tracedSave, n)
	for i := range saves {
		saves[i] = &tracedSave{save: save{taskID: fmt.Sprintf("tr-%s-%02d", testenv.RandomName(""), i), quote: sampleQuote("TRC", price, now)}}
	}
	rec, db, _ := tracedBatch(t, saves)
	for _, s := range saves {
		if s.err != nil || !s.inserted {
			t.Fatalf("save %s: inserted %v, err %v", s.taskID, s.inserted, s.err)
		}
	}
	spans := rec.Ended()

	waits := map[trace.SpanID]trace.SpanContext{} // job span id → its wait span
	for _, w := range byName(spans, postgres.SpanCommitWait) {
		waits[w.Parent().SpanID()] = w.SpanContext()
		if got := spanAttrs(w)[postgres.AttrBatchRows].AsInt64(); got != n {
			t.Errorf("commit wait's %s = %d, want %d", postgres.AttrBatchRows, got, n)
		}
	}
	batches := byName(spans, postgres.SpanCommitBatch)
	if len(batches) != 1 {
		t.Fatalf("%d commit batch spans, want 1 (the untraced BLOCK batch makes none)", len(batches))
	}
	batch := batches[0]
	if batch.Parent().IsValid() {
		t.Errorf("commit batch has parent %v, want a root", batch.Parent())
	}
	linked := map[trace.SpanID]bool{}
	for _, l := range batch.Links() {
		linked[l.SpanContext.SpanID()] = true
	}
	for _, s := range saves {
		w, ok := waits[s.job.SpanContext().SpanID()]
		if !ok {
			t.Errorf("job %s has no commit wait child", s.taskID)
			continue
		}
		if !linked[w.SpanID()] {
			t.Errorf("the batch does not link job %s's commit wait", s.taskID)
		}
	}
	if len(batch.Links()) != n {
		t.Errorf("%d links, want %d", len(batch.Links()), n)
	}
	a := spanAttrs(batch)
	if a[postgres.AttrBatchRows].AsInt64() != n || a["db.system.name"].AsString() != "postgresql" || a[postgres.AttrDBRole].AsString() != db.Role().String() {
		t.Errorf("commit batch attributes %v", batch.Attributes())
	}

	// The SQL runs under the batch span: otelpgx's spans are its
	// descendants, the insert's statement text among them.
	parentOf := map[trace.SpanID]trace.SpanID{}
	for _, s := range spans {
		parentOf[s.SpanContext().SpanID()] = s.Parent().SpanID()
	}
	under := func(s sdktrace.ReadOnlySpan) bool {
		for id := s.Parent().SpanID(); id.IsValid(); id = parentOf[id] {
			if id == batch.SpanContext().SpanID() {
				return true
			}
		}
		return false
	}
	var sawInsert bool
	for _, s := range spans {
		if s.InstrumentationScope().Name == "github.com/exaring/otelpgx" {
			if !under(s) {
				t.Errorf("SQL span %q outside the batch span (parent %v)", s.Name(), s.Parent().SpanID())
			}
			if strings.Contains(spanAttrs(s)["db.query.text"].AsString(), "INSERT INTO stock_prices") {
				sawInsert = true
			}
		}
		// The only roots: the test's jobs and the batch. The pool guard's
		// check and the start-up ping start no trace.
		if !s.Parent().IsValid() && s.Name() != "job" && s.Name() != postgres.SpanCommitBatch {
			t.Errorf("root span %q (scope %s)", s.Name(), s.InstrumentationScope().Name)
		}
	}
	if !sawInsert {
		t.Error("no SQL span with the insert's statement text under the batch span")
	}
	checkNoData(t, spans, price, saves[0].taskID)
}

func TestCommitterBatchSpanPerFlushAttempt(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	saves := make([]*tracedSave, 8)
	for i := range saves {
		saves[i] = &tracedSave{save: save{taskID: fmt.Sprintf("rj-%s-%02d", testenv.RandomName(""), i), quote: sampleQuote("RJT", "10", now)}}
	}
	bad := saves[5]
	bad.quote.Price = json.Number("NaN")
	rec, _, obs := tracedBatch(t, saves)
	if !errors.Is(bad.err, tasks.ErrRejected) {
		t.Fatalf("bad row: %v, want rejected", bad.err)
	}
	spans := rec.Ended()
	batches := byName(spans, postgres.SpanCommitBatch)
	obs.mu.Lock()
	flushes := len(obs.flushes) - 1 // less the BLOCK row's
	obs.mu.Unlock()
	if len(batches) != flushes {
		t.Errorf("%d commit batch spans for %d flush attempts", len(batches), flushes)
	}
	var failed int
	for _, b := range batches {
		if b.Status().Code == codes.Error {
			failed++
			if !strings.HasPrefix(b.Status().Description, "SQLSTATE ") {
				t.Errorf("failed batch status %q, want only its SQLSTATE", b.Status().Description)
			}
		}
	}
	if failed == 0 || failed == len(batches) {
		t.Errorf("%d of %d batch attempts failed: want the ones holding the bad row", failed, len(batches))
	}
	for _, w := range byName(spans, postgres.SpanCommitWait) {
		isBad := w.Parent().SpanID() == bad.job.SpanContext().SpanID()
		if (w.Status().Code == codes.Error) != isBad {
			t.Errorf("commit wait status %v (bad row: %v)", w.Status(), isBad)
		}
	}
	checkNoData(t, spans, "NaN")
}
