package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// options are the bench's flags.
type options struct {
	out              string
	rounds           int
	jobs             int
	concurrency      int
	enqueueLines     int
	openLoopDuration time.Duration
	overlapScale     int // divides the overlap scenarios' job counts (tests)
	skip             []string
	oldWorker        string
	// redisURL and databaseURL come from REDIS_URL and DATABASE_URL.
	redisURL, databaseURL string
}

func (o *options) bind(f *pflag.FlagSet) {
	o.redisURL = cli.Env(config.EnvRedisURL, config.DefaultRedisURL)
	o.databaseURL = cli.Env(config.EnvDatabaseURL, config.DefaultDatabaseURL)
	f.StringVar(&o.out, "out", "bench-output", "directory for results.json, results.md, throughput.png and the programs' logs")
	f.IntVar(&o.rounds, "rounds", 5, "alternating rounds of the throughput configurations")
	f.IntVar(&o.jobs, "jobs", 20000, "jobs per throughput run")
	f.IntVar(&o.concurrency, "concurrency", config.DefaultConcurrency, "worker concurrency of the throughput runs")
	f.IntVar(&o.enqueueLines, "enqueue-lines", 100000, "lines of the file producer enqueue reads")
	f.DurationVar(&o.openLoopDuration, "open-loop-duration", 10*time.Second, "how long each open-loop load runs")
	f.IntVar(&o.overlapScale, "overlap-scale", 1, "divide the overlap and scale scenarios' job counts by this (quick runs)")
	f.StringSliceVar(&o.skip, "skip", nil, "sections to leave out: throughput, overlap, enqueue, latency, scale")
	_ = f.MarkHidden("overlap-scale")
	f.StringVar(&o.oldWorker, "old-worker", "", "also measure this worker binary (e.g. one built from before group commit) as a throughput configuration; it gets pool_max_conns=50")
}

func (o *options) check() error {
	switch {
	case o.rounds < 1:
		return fmt.Errorf("--rounds %d: want at least 1", o.rounds)
	case o.jobs < 100:
		return fmt.Errorf("--jobs %d: want at least 100", o.jobs)
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d: want at least 1", o.concurrency)
	case o.enqueueLines < 1:
		return fmt.Errorf("--enqueue-lines %d: want at least 1", o.enqueueLines)
	case o.openLoopDuration < time.Second:
		return fmt.Errorf("--open-loop-duration %s: want at least 1s", o.openLoopDuration)
	case o.overlapScale < 1:
		return fmt.Errorf("--overlap-scale %d: want at least 1", o.overlapScale)
	}
	if o.oldWorker != "" {
		if _, err := os.Stat(o.oldWorker); err != nil {
			return fmt.Errorf("--old-worker: %w", err)
		}
	}
	for _, s := range o.skip {
		switch s {
		case "throughput", "overlap", "enqueue", "latency", "scale":
		default:
			return fmt.Errorf("--skip %q: want throughput, overlap, enqueue, latency or scale", s)
		}
	}
	return nil
}

func (o *options) skipped(section string) bool {
	for _, s := range o.skip {
		if s == section {
			return true
		}
	}
	return false
}

// asMainEnv set to 1 makes the bench's test binary run as the bench
// itself (see bench_test.go); the bench program ignores it.
const asMainEnv = "TICKERQ_BENCH_AS_MAIN"

// oneTxPoolCap caps the pool of the one-transaction-per-job worker.
const oneTxPoolCap = 50

// bench is one run's world: the built programs, a database of its own, the
// Redis, and the processes it started.
type bench struct {
	opts  options
	bin   string // worker, producer, quoteserver
	self  string // this program, for `bench serve`
	logs  string
	runID string

	redisURL string
	rdb      *redis.Client
	asynq    *asynq.Client
	insp     *asynq.Inspector

	adminURL string // DATABASE_URL's server, as its user
	dbName   string
	dbURL    string
	role     postgres.Role
	pg       *pgx.Conn // to the bench database, as the admin user

	otlp *otlpSink // the traced configuration's collector

	mu    sync.Mutex
	procs []*proc
}

func newBench(ctx context.Context, opts options) (b *bench, err error) {
	b = &bench{opts: opts, runID: strconv.FormatInt(time.Now().Unix()%1_000_000, 36)}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.logs, err = filepath.Abs(filepath.Join(opts.out, "logs")); err != nil {
		return b, err
	}
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return b, err
	}
	if b.self, err = os.Executable(); err != nil {
		return b, err
	}
	progress("building worker, producer and quoteserver")
	if b.bin, err = testenv.BuildPrograms(); err != nil {
		return b, err
	}

	b.redisURL = opts.redisURL
	redisOpt, err := config.ParseRedisURL(config.EnvRedisURL, b.redisURL)
	if err != nil {
		return b, cli.Usage(err)
	}
	rc, ok := redisOpt.MakeRedisClient().(*redis.Client)
	if !ok {
		return b, cli.Usagef("%s: the bench needs a plain redis:// server", config.EnvRedisURL)
	}
	b.rdb = rc
	b.asynq = asynq.NewClientFromRedisClient(b.rdb) // no I/O: close() can rely on both
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return b, fmt.Errorf("redis: %w", err)
	}

	if err := b.createDatabase(ctx); err != nil {
		return b, err
	}
	if b.otlp, err = startOTLPSink(); err != nil {
		return b, fmt.Errorf("otlp sink: %w", err)
	}
	return b, nil
}

// createDatabase makes the bench's database and role on DATABASE_URL's
// server and migrates it.
func (b *bench) createDatabase(ctx context.Context) error {
	u, err := url.Parse(b.opts.databaseURL)
	if err != nil {
		return cli.Usagef("%s: %v", config.EnvDatabaseURL, err)
	}
	q := u.Query()
	q.Del("pool_max_conns")
	u.RawQuery = q.Encode()
	u.Path = "/postgres"
	b.adminURL = u.String()
	b.dbName = "tickerq_bench_" + b.runID
	if b.role, err = postgres.ParseRole("tickerq_bench_" + b.runID); err != nil {
		return err
	}
	u.Path = "/" + b.dbName
	b.dbURL = u.String()

	if err := b.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{b.dbName}.Sanitize()); err != nil {
		return err
	}
	if _, err := postgres.Migrate(ctx, b.dbURL, postgres.MigrateOptions{Role: b.role}); err != nil {
		return fmt.Errorf("migrate %s: %w", b.dbName, err)
	}
	b.pg, err = pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", b.dbName, err)
	}
	return nil
}

func (b *bench) adminExec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// close stops what is still running and drops the database and role.
func (b *bench) close() {
	b.mu.Lock()
	procs := b.procs
	b.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.pg != nil {
		_ = b.pg.Close(ctx)
	}
	if b.dbName != "" && b.adminURL != "" {
		_ = b.adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.dbName}.Sanitize()+" WITH (FORCE)")
		_ = b.adminExec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{b.role.String()}.Sanitize())
	}
	if b.rdb != nil {
		_ = b.deleteQueues(ctx, "bench-"+b.runID+"-*")
		_ = b.insp.Close()
		_ = b.asynq.Close()
		_ = b.rdb.Close()
	}
	if b.bin != "" {
		_ = os.RemoveAll(b.bin)
	}
	if b.otlp != nil {
		b.otlp.close()
	}
}

// queue names a queue of this run.
func (b *bench) queue(name string) string { return "bench-" + b.runID + "-" + name }

// deleteQueues removes every key of the queues matching pattern.
func (b *bench) deleteQueues(ctx context.Context, pattern string) error {
	iter := b.rdb.Scan(ctx, 0, "asynq:{"+pattern+"}:*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			if err := b.rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		if err := b.rdb.Unlink(ctx, keys...).Err(); err != nil {
			return err
		}
	}
	var queues []string
	all, err := b.rdb.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		return err
	}
	for _, q := range all {
		if ok, _ := filepath.Match(pattern, q); ok {
			queues = append(queues, q)
		}
	}
	if len(queues) > 0 {
		return b.rdb.SRem(ctx, "asynq:queues", queues).Err()
	}
	return iter.Err()
}

// enqueue puts n quote-fetch tasks for distinct symbols into queue, with
// the options the producer gives them.
func (b *bench) enqueue(ctx context.Context, queue string, n int, prefix string) error {
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range 32 {
		g.Go(func() error {
			for i := range next {
				t, err := tasks.NewQuoteFetchTask(fmt.Sprintf("%s%06d", prefix, i), asynq.Queue(queue))
				if err != nil {
					return err
				}
				if _, err := b.asynq.EnqueueContext(ctx, t); err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// counts reads a queue's pending and completed task counts and asynq's
// processed and failed totals.
type counts struct {
	pending, active, retry, completed, processed, failed int64
}

func (b *bench) counts(ctx context.Context, queue string) (counts, error) {
	pre := "asynq:{" + queue + "}:"
	pipe := b.rdb.Pipeline()
	pending := pipe.LLen(ctx, pre+"pending")
	active := pipe.LLen(ctx, pre+"active")
	retry := pipe.ZCard(ctx, pre+"retry")
	completed := pipe.ZCard(ctx, pre+"completed")
	processed := pipe.Get(ctx, pre+"processed")
	failed := pipe.Get(ctx, pre+"failed")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return counts{}, err
	}
	p, _ := processed.Int64()
	f, _ := failed.Int64()
	return counts{pending.Val(), active.Val(), retry.Val(), completed.Val(), p, f}, nil
}

// drained is what drain saw of a queue being worked off.
type drained struct {
	first     time.Time // first poll at which a task had left pending
	firstDone time.Time // first poll with a newly completed task
	doneAt0   int64     // completed tasks at firstDone
	last      time.Time // poll at which the wanted count had completed
	want      int64
	final     counts
}

// rate is the completion rate between the first and the last completion.
func (d drained) rate() float64 {
	return float64(d.want-d.doneAt0) / d.last.Sub(d.firstDone).Seconds()
}

// drain polls queue every interval until want tasks have completed, or
// timeout. pending0 is how many tasks wait when it starts: the first poll
// that sees fewer marks the first dequeue. procs are the processes working
// the queue off, watched so that a crash ends the wait.
func (b *bench) drain(ctx context.Context, queue string, pending0, want int, timeout, every time.Duration, procs ...*proc) (drained, error) {
	d := drained{want: int64(want)}
	var done0 int64 = -1
	deadline := time.Now().Add(timeout)
	for {
		c, err := b.counts(ctx, queue)
		if err != nil {
			return d, err
		}
		now := time.Now()
		if done0 < 0 {
			done0 = c.completed
		}
		if d.first.IsZero() && c.pending < int64(pending0) {
			d.first = now
		}
		if d.firstDone.IsZero() && c.completed > done0 {
			d.firstDone, d.doneAt0 = now, c.completed
		}
		if c.completed >= int64(want) {
			d.last, d.final = now, c
			return d, nil
		}
		for _, p := range procs {
			if p.exited() {
				return d, fmt.Errorf("%s exited while %s drained (%+v); see %s", p.name, queue, c, p.logPath)
			}
		}
		if now.After(deadline) {
			return d, fmt.Errorf("queue %s not drained after %s: %+v", queue, timeout, c)
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(every):
		}
	}
}

// truncate empties the price tables, so every run writes into the same
// state.
func (b *bench) truncate(ctx context.Context) error {
	_, err := b.pg.Exec(ctx, "TRUNCATE stock_prices, latest_prices")
	return err
}

func (b *bench) rows(ctx context.Context) (int, error) {
	var n int
	err := b.pg.QueryRow(ctx, "SELECT count(DISTINCT task_id) FROM stock_prices").Scan(&n)
	return n, err
}

// proc is a program the bench started.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	err           error
}

// start runs path with args and env (added to the bench's own), logging
// to logs/NAME.log.
func (b *bench) start(name, path string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(b.logs, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit; SIGKILL after a minute.
func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.kill()
		return fmt.Errorf("%s did not stop within a minute of SIGTERM", p.name)
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w (see %s)", p.name, p.err, p.logPath)
	}
	return nil
}

func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// loggedAddr waits for the JSON log line with message msg and returns its
// addr field (the programs bind port 0 and log the real address).
func (p *proc) loggedAddr(msg string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if addr := findLogged(p.logPath, msg); addr != "" {
			return addr, nil
		}
		if p.exited() {
			return "", fmt.Errorf("%s exited before logging %q: %v (see %s)", p.name, msg, p.err, p.logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not log %q (see %s)", p.name, msg, p.logPath)
}

func findLogged(path, msg string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Msg  string `json:"message"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Msg == msg && ev.Addr != "" {
			return ev.Addr
		}
	}
	return ""
}

// countInLog counts lines of p's log that contain s.
func (p *proc) countInLog(s string) int {
	f, err := os.Open(p.logPath)
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// quoteserver starts the local quote API with latency and returns its URL.
func (b *bench) quoteserver(name string, latency time.Duration) (string, *proc, error) {
	p, err := b.start(name, filepath.Join(b.bin, "quoteserver"), []string{"LOG_FORMAT=json", "LOG_LEVEL=info"},
		"--addr", "127.0.0.1:0", "--latency", latency.String())
	if err != nil {
		return "", nil, err
	}
	addr, err := p.loggedAddr("quoteserver listening")
	if err != nil {
		return "", nil, err
	}
	return "http://" + addr, p, nil
}

// server starts what works off queue: the worker (tickerq, tickerq-1tx)
// or a baseline (noop, get).
func (b *bench) server(name, mode, queue, quoteURL string, concurrency int) (*proc, error) {
	switch mode {
	case modeNoop, modeGet:
		return b.start(name, b.self, []string{config.EnvRedisURL + "=" + b.redisURL, asMainEnv + "=1"},
			"serve", "--mode", mode, "--queue", queue, "--quote-url", quoteURL, "--concurrency", strconv.Itoa(concurrency))
	case modeTickerq, modeOneTx, modeOld, modeTraced:
		args := []string{"--queues", queue + "=1", "--concurrency", strconv.Itoa(concurrency)}
		// Tracing is off in every configuration but the traced one, even
		// if the bench's own environment switches it on.
		tracing := []string{"OTEL_SDK_DISABLED=true"}
		if mode == modeTraced {
			tracing = []string{"OTEL_SDK_DISABLED=", "OTEL_EXPORTER_OTLP_ENDPOINT=" + b.otlp.url,
				"OTEL_TRACES_SAMPLER=always_on", "OTEL_SERVICE_NAME=tickerq-bench"}
		}
		dbURL := b.dbURL
		path := filepath.Join(b.bin, "worker")
		switch mode {
		case modeOld:
			path = b.opts.oldWorker
			dbURL += "&pool_max_conns=" + strconv.Itoa(min(concurrency+2, oneTxPoolCap))
		case modeOneTx:
			// A pool of concurrency+2 would pass a stock Postgres's 100
			// connections at the default concurrency; 50, as the issue
			// measured it, lets every job through.
			args = append(args, "--bench-one-tx-per-job")
			dbURL += "&pool_max_conns=" + strconv.Itoa(min(concurrency+2, oneTxPoolCap))
		}
		p, err := b.start(name, path, append([]string{
			config.EnvRedisURL + "=" + b.redisURL,
			config.EnvDatabaseURL + "=" + dbURL,
			config.EnvDBRole + "=" + b.role.String(),
			config.EnvQuoteAPIURL + "=" + quoteURL,
			config.EnvAdminAddr + "=127.0.0.1:0",
			"LOG_FORMAT=json", "LOG_LEVEL=info",
		}, tracing...), args...)
		if err != nil {
			return nil, err
		}
		if _, err := p.loggedAddr("admin server listening"); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}
