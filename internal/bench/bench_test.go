package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// TestMain lets the test binary stand in for the bench program: the bench
// starts itself (os.Executable) with `serve` for the asynq baselines.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestBenchRunsEverySection runs the whole bench at toy sizes, so that `make
// bench` is known to work on a new machine, and checks that the report
// holds a sane figure for every section. The figures themselves are not
// judged: a test's machine is busy with other tests.
func TestBenchRunsEverySection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every program")
	}
	t.Parallel()
	out := t.TempDir()
	opts := options{
		out: out, rounds: 1, jobs: 300, concurrency: 20, enqueueLines: 500,
		openLoopDuration: time.Second, overlapScale: 20,
		redisURL:    testenv.RedisURL(t),
		databaseURL: testenv.URLFor("postgres", ""),
	}
	if err := opts.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Throughput) != len(configurations) {
		t.Fatalf("%d throughput configurations, want %d", len(r.Throughput), len(configurations))
	}
	for _, c := range r.Throughput {
		if c.Median <= 0 || len(c.Runs) != 1 || c.Runs[0].Failed != 0 {
			t.Errorf("throughput %s: %+v", c.Mode, c)
		}
		if (c.Mode == modeTickerq || c.Mode == modeOneTx || c.Mode == modeTraced) && c.Runs[0].Rows != opts.jobs {
			t.Errorf("throughput %s: %d rows for %d jobs", c.Mode, c.Runs[0].Rows, opts.jobs)
		}
		// Each job has at least its job, quote and commit-wait spans.
		if c.Mode == modeTraced && c.Runs[0].Spans < 3*int64(opts.jobs) {
			t.Errorf("throughput %s: %d spans exported for %d jobs", c.Mode, c.Runs[0].Spans, opts.jobs)
		}
	}
	if r.Ratios == nil || r.Ratios.TickerqOverGet <= 0 || r.Ratios.TickerqOverOneTx <= 0 {
		t.Errorf("ratios: %+v", r.Ratios)
	}
	if len(r.Overlap) != 4 {
		t.Errorf("%d overlap runs, want 4", len(r.Overlap))
	}
	for _, o := range r.Overlap {
		if o.Efficiency <= 0 || o.Efficiency > 1.05 || o.Failed != 0 || o.Errors53300 != 0 {
			t.Errorf("overlap: %+v", o)
		}
	}
	if r.RSS.PeakMiB <= 0 {
		t.Errorf("worker RSS: %+v", r.RSS)
	}
	if r.Enqueue.Lines != opts.enqueueLines || r.Enqueue.PerSecond <= 0 {
		t.Errorf("enqueue: %+v", r.Enqueue)
	}
	if len(r.Latency) != 2 {
		t.Errorf("%d latency loads, want 2", len(r.Latency))
	}
	for _, l := range r.Latency {
		if l.Committed != l.Jobs || !(l.P50MS > 0 && l.P50MS <= l.P99MS) {
			t.Errorf("latency: %+v", l)
		}
	}
	if s := r.Scale; s.Rows != s.Jobs || s.Failed != 0 || s.Errors53300 != 0 || s.MaxPgConnections <= 0 {
		t.Errorf("scale: %+v", s)
	}
	for _, name := range []string{"results.md", "throughput.png"} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}
