package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/tasks"
)

// The tickerq configurations; modeNoop and modeGet are the baselines.
const (
	modeTickerq = "tickerq"     // the worker as shipped: group commit
	modeOneTx   = "tickerq-1tx" // the worker with --bench-one-tx-per-job
	modeOld     = "tickerq-old" // --old-worker, when given
	// modeTraced is modeTickerq with tracing on: every trace sampled and
	// exported over OTLP/HTTP to the bench's own sink.
	modeTraced = "tickerq-traced"
)

// oldLabel names the --old-worker configuration.
const oldLabel = "tickerq before group commit (--old-worker)"

// configurations of the throughput rounds, in the order each round runs
// them.
var configurations = []struct{ mode, label string }{
	{modeNoop, "asynq, no-op handler"},
	{modeGet, "asynq, quote GET only"},
	{modeTickerq, "tickerq end to end (group commit)"},
	{modeTraced, "tickerq end to end, tracing on (100 % sampled, OTLP/HTTP)"},
	{modeOneTx, "tickerq, one transaction per job"},
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// run runs every section not skipped and writes the report.
func run(ctx context.Context, opts options) error {
	b, err := newBench(ctx, opts)
	if err != nil {
		return err
	}
	defer b.close()
	rep := &Report{Settings: Settings{
		Jobs: opts.jobs, Rounds: opts.rounds, Concurrency: opts.concurrency,
		EnqueueLines: opts.enqueueLines, OpenLoopSeconds: opts.openLoopDuration.Seconds(),
	}}
	rep.Machine = b.machine(ctx)

	quoteURL, qs, err := b.quoteserver("quoteserver", 0)
	if err != nil {
		return err
	}
	defer func() { _ = qs.stop() }()

	if !opts.skipped("throughput") {
		if rep.Throughput, err = b.throughputRounds(ctx, quoteURL); err != nil {
			return err
		}
		rep.Ratios = ratios(rep.Throughput)
	}
	if !opts.skipped("overlap") {
		if rep.Overlap, rep.RSS, err = b.overlapRuns(ctx); err != nil {
			return err
		}
	}
	if !opts.skipped("enqueue") {
		if rep.Enqueue, err = b.enqueueRate(ctx); err != nil {
			return err
		}
	}
	if !opts.skipped("latency") {
		capacity := 0.0
		for _, c := range rep.Throughput {
			if c.Mode == modeTickerq {
				capacity = c.Median
			}
		}
		if capacity == 0 {
			progress("latency: no tickerq throughput measured; measuring one run for the capacity")
			r, err := b.throughputRun(ctx, modeTickerq, "cap", quoteURL)
			if err != nil {
				return err
			}
			capacity = r.JobsPerSecond
		}
		if rep.Latency, err = b.openLoop(ctx, quoteURL, capacity); err != nil {
			return err
		}
	}
	if !opts.skipped("scale") {
		if rep.Scale, err = b.scale(ctx); err != nil {
			return err
		}
	}
	rep.Finished = time.Now().UTC()
	return rep.write(opts.out)
}

// throughputRounds runs every configuration once per round, in turn, and
// keeps the medians.
func (b *bench) throughputRounds(ctx context.Context, quoteURL string) ([]ConfigResult, error) {
	configs := configurations
	if b.opts.oldWorker != "" {
		configs = append(slices.Clone(configs), struct{ mode, label string }{modeOld, oldLabel})
	}
	results := make([]ConfigResult, len(configs))
	for i, c := range configs {
		results[i] = ConfigResult{Mode: c.mode, Label: c.label}
	}
	for round := 1; round <= b.opts.rounds; round++ {
		for i, c := range configs {
			r, err := b.throughputRun(ctx, c.mode, fmt.Sprintf("r%d", round), quoteURL)
			if err != nil {
				return nil, err
			}
			results[i].Runs = append(results[i].Runs, r)
			progress("round %d/%d  %-40s %8.0f jobs/s", round, b.opts.rounds, c.label, r.JobsPerSecond)
		}
	}
	for i := range results {
		results[i].summarise()
	}
	return results, nil
}

// throughputRun pre-enqueues the jobs, then starts one server on them and
// measures the rate between the first and the last completion.
func (b *bench) throughputRun(ctx context.Context, mode, tag, quoteURL string) (Run, error) {
	n := b.opts.jobs
	queue := b.queue(tag + "-" + mode)
	defer func() { _ = b.deleteQueues(context.WithoutCancel(ctx), queue) }()
	if err := b.enqueue(ctx, queue, n, "T"); err != nil {
		return Run{}, err
	}
	if err := b.truncate(ctx); err != nil {
		return Run{}, err
	}
	spans0 := b.otlp.spans.Load()
	p, err := b.server(tag+"-"+mode, mode, queue, quoteURL, b.opts.concurrency)
	if err != nil {
		return Run{}, err
	}
	d, err := b.drain(ctx, queue, n, n, 10*time.Minute, 10*time.Millisecond, p)
	if err != nil {
		p.kill()
		return Run{}, err
	}
	run := Run{JobsPerSecond: d.rate(), Seconds: d.last.Sub(d.first).Seconds(), Failed: d.final.failed}
	if mode == modeTickerq || mode == modeOneTx || mode == modeOld || mode == modeTraced {
		run.BatchRows = batchRows(p)
		if run.Rows, err = b.rows(ctx); err != nil {
			return run, err
		}
		if run.Rows != n {
			return run, fmt.Errorf("%s: %d rows for %d jobs", mode, run.Rows, n)
		}
	}
	if err := p.stop(); err != nil {
		return run, err
	}
	// The worker flushes its last spans as it stops.
	if mode == modeTraced {
		if run.Spans = b.otlp.spans.Load() - spans0; run.Spans == 0 {
			return run, fmt.Errorf("%s: the worker exported no span (see %s)", mode, p.logPath)
		}
	}
	if d.final.failed != 0 {
		return run, fmt.Errorf("%s: %d jobs failed (see %s)", mode, d.final.failed, p.logPath)
	}
	return run, nil
}

// batchRows reads the worker's mean rows per batch from its /metrics.
func batchRows(p *proc) float64 {
	addr := findLogged(p.logPath, "admin server listening")
	if addr == "" {
		return 0
	}
	text, err := httpGet("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	sum, count := metric(text, "tickerq_pg_batch_rows_sum"), metric(text, "tickerq_pg_batch_rows_count")
	if count == 0 {
		return 0
	}
	return sum / count
}

// overlapRuns drains jobs that each wait on the quote API, with tickerq
// and with asynq's GET-only baseline, and measures the worker's peak RSS
// at concurrency 1 000.
func (b *bench) overlapRuns(ctx context.Context) ([]OverlapResult, RSS, error) {
	var rss RSS
	var out []OverlapResult
	for _, sc := range []struct {
		jobs        int
		latency     time.Duration
		concurrency int
	}{
		{400, time.Second, 400},
		{2000, 200 * time.Millisecond, 1000},
	} {
		jobs := max(sc.jobs/b.opts.overlapScale, 1)
		conc := max(sc.concurrency/b.opts.overlapScale, 1)
		quoteURL, qs, err := b.quoteserver(fmt.Sprintf("quoteserver-%s", sc.latency), sc.latency)
		if err != nil {
			return nil, rss, err
		}
		for _, mode := range []string{modeGet, modeTickerq} {
			tag := fmt.Sprintf("ov%d", jobs)
			queue := b.queue(tag + "-" + mode)
			if err := b.truncate(ctx); err != nil {
				return nil, rss, err
			}
			p, err := b.server(tag+"-"+mode, mode, queue, quoteURL, conc)
			if err != nil {
				return nil, rss, err
			}
			// A warm-up round, so that the measured one meets a worker
			// that has been running: its connections to the quote API
			// and to Postgres open, its goroutine stacks grown.
			if err := b.enqueue(ctx, queue, jobs, "U"); err != nil {
				return nil, rss, err
			}
			if _, err := b.drain(ctx, queue, jobs, jobs, 5*time.Minute, 20*time.Millisecond, p); err != nil {
				return nil, rss, err
			}
			// The measured round: enqueued while the queue is paused,
			// then released at once.
			if err := b.insp.PauseQueue(queue); err != nil {
				return nil, rss, err
			}
			if err := b.enqueue(ctx, queue, jobs, "V"); err != nil {
				return nil, rss, err
			}
			conns := newConnSampler(b)
			if err := b.insp.UnpauseQueue(queue); err != nil {
				return nil, rss, err
			}
			d, err := b.drain(ctx, queue, jobs, 2*jobs, 5*time.Minute, 2*time.Millisecond, p)
			peak := peakRSS(p)
			maxConns := conns.stop()
			if err != nil {
				return nil, rss, err
			}
			ideal := time.Duration(float64(sc.latency) * float64(jobs) / float64(conc))
			ideal = max(ideal, sc.latency)
			measured := d.last.Sub(d.first)
			r := OverlapResult{
				Mode: mode, Jobs: jobs, LatencyMS: sc.latency.Milliseconds(), Concurrency: conc,
				IdealSeconds: ideal.Seconds(), MeasuredSeconds: measured.Seconds(),
				Efficiency: ideal.Seconds() / measured.Seconds(), Failed: d.final.failed,
				MaxPgConnections: maxConns, PeakRSSMiB: peak,
			}
			if mode == modeTickerq {
				r.Errors53300 = p.countInLog("SQLSTATE 53300")
				if conc == 1000/b.opts.overlapScale {
					rss = RSS{Concurrency: conc, PeakMiB: peak}
				}
			}
			if err := p.stop(); err != nil {
				return nil, rss, err
			}
			_ = b.deleteQueues(ctx, queue)
			out = append(out, r)
			progress("overlap %d × %s at concurrency %d, %-8s %.3fs (ideal %.3fs): efficiency %.3f",
				jobs, sc.latency, conc, mode, measured.Seconds(), ideal.Seconds(), r.Efficiency)
		}
		_ = qs.stop()
	}
	// Efficiency of tickerq relative to asynq's GET-only run of the same
	// scenario.
	for i := range out {
		if out[i].Mode == modeTickerq && i > 0 && out[i-1].Mode == modeGet {
			out[i].RelativeToGet = out[i].Efficiency / out[i-1].Efficiency
		}
	}
	return out, rss, nil
}

// enqueueRate times `producer enqueue --file` on a file of distinct
// symbols.
func (b *bench) enqueueRate(ctx context.Context) (EnqueueResult, error) {
	n := b.opts.enqueueLines
	path := filepath.Join(b.logs, fmt.Sprintf("enqueue-%d.txt", n))
	f, err := os.Create(path)
	if err != nil {
		return EnqueueResult{}, err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "Q%06d\n", i)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return EnqueueResult{}, err
	}
	queue := b.queue("enqueue")
	defer func() { _ = b.deleteQueues(context.WithoutCancel(ctx), queue) }()
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "producer"), "enqueue", "--file", path, "--queue", queue)
	cmd.Env = append(os.Environ(), config.EnvRedisURL+"="+b.redisURL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return EnqueueResult{}, fmt.Errorf("producer enqueue: %w: %s", err, stderr.String())
	}
	took := time.Since(start)
	c, err := b.counts(ctx, queue)
	if err != nil {
		return EnqueueResult{}, err
	}
	if c.pending != int64(n) {
		return EnqueueResult{}, fmt.Errorf("producer enqueue: %d tasks pending, want %d", c.pending, n)
	}
	r := EnqueueResult{Lines: n, Seconds: took.Seconds(), PerSecond: float64(n) / took.Seconds()}
	progress("producer enqueue --file: %d lines in %.2fs, %.0f/s", n, r.Seconds, r.PerSecond)
	return r, nil
}

// openLoop offers jobs at fixed rates (50% and 80% of capacity) whatever
// happens to earlier ones, and measures each job from the moment it was
// due to be enqueued to the commit of its row. Commits are seen through a
// NOTIFY sent by a statement trigger of the bench database, which Postgres
// delivers at commit.
func (b *bench) openLoop(ctx context.Context, quoteURL string, capacity float64) ([]LatencyResult, error) {
	if _, err := b.pg.Exec(ctx, `
		CREATE OR REPLACE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE chunk text;
		BEGIN
			FOR chunk IN SELECT string_agg(task_id, ',') FROM
				(SELECT task_id, (row_number() OVER ()) / 300 AS g FROM new_rows) s GROUP BY g
			LOOP
				PERFORM pg_notify('bench_commit', chunk);
			END LOOP;
			RETURN NULL;
		END $$;
		CREATE OR REPLACE TRIGGER bench_notify AFTER INSERT ON stock_prices
			REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();`); err != nil {
		return nil, fmt.Errorf("install the commit trigger: %w", err)
	}
	defer func() {
		_, _ = b.pg.Exec(context.WithoutCancel(ctx), "DROP TRIGGER IF EXISTS bench_notify ON stock_prices")
	}()
	var out []LatencyResult
	for _, load := range []float64{0.5, 0.8} {
		r, err := b.openLoopAt(ctx, quoteURL, load, capacity)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		progress("open loop at %.0f%% of %.0f jobs/s: enqueue→commit p50 %.1f ms, p99 %.1f ms (%d jobs)",
			load*100, capacity, r.P50MS, r.P99MS, r.Jobs)
	}
	return out, nil
}

func (b *bench) openLoopAt(ctx context.Context, quoteURL string, load, capacity float64) (LatencyResult, error) {
	rate := load * capacity
	n := int(rate * b.opts.openLoopDuration.Seconds())
	tag := fmt.Sprintf("ol%.0f", load*100)
	queue := b.queue(tag)
	defer func() { _ = b.deleteQueues(context.WithoutCancel(ctx), queue) }()
	if err := b.truncate(ctx); err != nil {
		return LatencyResult{}, err
	}
	p, err := b.server(tag+"-"+modeTickerq, modeTickerq, queue, quoteURL, b.opts.concurrency)
	if err != nil {
		return LatencyResult{}, err
	}
	defer func() { _ = p.stop() }()

	listener, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return LatencyResult{}, err
	}
	defer listener.Close(context.WithoutCancel(ctx))
	if _, err := listener.Exec(ctx, "LISTEN bench_commit"); err != nil {
		return LatencyResult{}, err
	}
	committed := make(map[string]time.Time, n)
	listenCtx, stopListening := context.WithCancel(ctx)
	allSeen := make(chan struct{})
	listenDone := make(chan error, 1)
	go func() {
		closed := false
		for {
			note, err := listener.WaitForNotification(listenCtx)
			if err != nil {
				listenDone <- err
				return
			}
			at := time.Now()
			for _, id := range strings.Split(note.Payload, ",") {
				committed[id] = at
			}
			if len(committed) == n && !closed {
				close(allSeen)
				closed = true
			}
		}
	}()

	// The generator: job i is due at start + i/rate.
	due := make([]time.Time, n)
	start := time.Now().Add(100 * time.Millisecond)
	var next atomic.Int64
	var wg sync.WaitGroup
	var enqErr atomic.Value
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				due[i] = at
				time.Sleep(time.Until(at))
				t, err := tasks.NewQuoteFetchTask(fmt.Sprintf("L%06d", i), asynq.Queue(queue), asynq.TaskID(fmt.Sprintf("%s-%d", tag, i)))
				if err == nil {
					_, err = b.asynq.EnqueueContext(ctx, t)
				}
				if err != nil {
					enqErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := enqErr.Load().(error); err != nil {
		stopListening()
		return LatencyResult{}, fmt.Errorf("open-loop enqueue: %w", err)
	}
	offered := time.Since(start)
	select {
	case <-allSeen:
	case err := <-listenDone:
		stopListening()
		return LatencyResult{}, fmt.Errorf("listen: %w", err)
	case <-time.After(2 * time.Minute):
	}
	stopListening()
	<-listenDone

	lat := make([]float64, 0, n)
	for i := range n {
		at, ok := committed[fmt.Sprintf("%s-%d", tag, i)]
		if !ok {
			continue
		}
		lat = append(lat, float64(at.Sub(due[i]))/float64(time.Millisecond))
	}
	slices.Sort(lat)
	r := LatencyResult{
		Load: load, RatePerSecond: rate, Jobs: n, Committed: len(lat),
		OfferedPerSecond: float64(n) / offered.Seconds(),
		P50MS:            percentile(lat, 0.50), P90MS: percentile(lat, 0.90),
		P99MS: percentile(lat, 0.99), MaxMS: percentile(lat, 1),
	}
	if len(lat) != n {
		return r, fmt.Errorf("open loop at %.0f%%: %d of %d commits seen", load*100, len(lat), n)
	}
	return r, nil
}

// scale runs three workers at concurrency 300 each on 20 000 jobs that wait
// 100 ms on the quote API, and samples the server's connection count.
func (b *bench) scale(ctx context.Context) (ScaleResult, error) {
	const workers, concurrency = 3, 300
	n := max(20000/b.opts.overlapScale, 100)
	quoteURL, qs, err := b.quoteserver("quoteserver-scale", 100*time.Millisecond)
	if err != nil {
		return ScaleResult{}, err
	}
	defer func() { _ = qs.stop() }()
	queue := b.queue("scale")
	defer func() { _ = b.deleteQueues(context.WithoutCancel(ctx), queue) }()
	if err := b.enqueue(ctx, queue, n, "W"); err != nil {
		return ScaleResult{}, err
	}
	if err := b.truncate(ctx); err != nil {
		return ScaleResult{}, err
	}
	conns := newConnSampler(b)
	var procs []*proc
	for i := range workers {
		p, err := b.server(fmt.Sprintf("scale-worker-%d", i+1), modeTickerq, queue, quoteURL, concurrency)
		if err != nil {
			return ScaleResult{}, err
		}
		procs = append(procs, p)
	}
	d, err := b.drain(ctx, queue, n, n, 5*time.Minute, 10*time.Millisecond, procs...)
	maxConns := conns.stop()
	if err != nil {
		return ScaleResult{}, err
	}
	r := ScaleResult{
		Workers: workers, Concurrency: concurrency, Jobs: n,
		Seconds: d.last.Sub(d.first).Seconds(), MaxPgConnections: maxConns,
		Processed: d.final.processed, Failed: d.final.failed, Retry: d.final.retry,
	}
	for _, p := range procs {
		r.Errors53300 += p.countInLog("SQLSTATE 53300")
		if err := p.stop(); err != nil {
			return r, err
		}
	}
	if r.Rows, err = b.rows(ctx); err != nil {
		return r, err
	}
	progress("scale: %d workers × concurrency %d, %d jobs in %.2fs; %d rows, %d failed, max %d Postgres connections (whole server)",
		workers, concurrency, n, r.Seconds, r.Rows, r.Failed, r.MaxPgConnections)
	return r, nil
}

// connSampler samples the server's whole connection count (every database,
// every client) until stopped.
type connSampler struct {
	stopCh chan struct{}
	done   chan int
}

func newConnSampler(b *bench) *connSampler {
	s := &connSampler{stopCh: make(chan struct{}), done: make(chan int, 1)}
	go func() {
		peak := 0
		conn, err := pgx.Connect(context.Background(), b.adminURL)
		if err != nil {
			s.done <- -1
			return
		}
		defer conn.Close(context.Background())
		for {
			var n int
			if err := conn.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n); err == nil {
				peak = max(peak, n)
			}
			select {
			case <-s.stopCh:
				s.done <- peak
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *connSampler) stop() int {
	close(s.stopCh)
	return <-s.done
}

// peakRSS is a running process's peak resident set (the kernel's VmHWM)
// in MiB, or 0 when it cannot be read.
func peakRSS(p *proc) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
