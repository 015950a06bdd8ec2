// Command worker runs tickerq's asynq worker: it fetches quote-fetch jobs from
// Redis, calls the quote API and writes the quotes to PostgreSQL under the
// restricted role. `worker migrate` applies the schema and the role.
package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/admin"
	"github.com/tickerq/tickerq/internal/broker"
	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/metrics"
	"github.com/tickerq/tickerq/internal/middleware"
	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/quote"
	"github.com/tickerq/tickerq/internal/ratelimit"
	"github.com/tickerq/tickerq/internal/startup"
	"github.com/tickerq/tickerq/internal/tracing"
	"github.com/tickerq/tickerq/tasks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, rootCmd(), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func rootCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Process quote-fetch jobs until SIGINT or SIGTERM",
		Long: `worker processes quote-fetch jobs from Redis until SIGINT or SIGTERM.
On a signal it stops fetching, lets in-flight jobs finish (bounded by
--shutdown-timeout) and exits 0.

` + config.EnvHelp(config.WorkerEnv) + `

Tracing: off by default; the standard OpenTelemetry variables switch it on
and configure it (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME,
OTEL_TRACES_SAMPLER, ...).

At start it retries its first connections to Postgres and Redis with backoff
for up to --connect-timeout (0 tries once), logging each attempt; meanwhile
/healthz answers 200 and /readyz 503 telling what it waits for. It exits 1
when time runs out and 0 on a signal while waiting.`,
		Args: cobra.NoArgs,
	}
	cfg := config.BindWorker(cmd.Flags())
	connectTimeout := cmd.Flags().String("connect-timeout", cli.Env(config.EnvWorkerConnectTimeout, config.DefaultConnectTimeout),
		"how long to retry the first connections to Postgres and Redis, e.g. 60s; 0 tries once")
	config.FlagFromEnv(cmd.Flags(), "connect-timeout", config.EnvWorkerConnectTimeout)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), cfg, *connectTimeout) }
	cmd.AddCommand(migrateCmd())
	return cmd
}

func migrateCmd() *cobra.Command {
	var member string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the schema and the DB_ROLE role, then exit",
		Long: `migrate creates or upgrades the tables, creates the NOLOGIN role DB_ROLE
with only the privileges the writes need, and makes the login user a member.
It is idempotent and safe to run from several hosts at once.

` + config.EnvHelp(config.MigrateEnv),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := config.Logger(os.Stderr)
			if err != nil {
				return cli.Usage(err)
			}
			role, err := postgres.ParseRole(cli.Env(config.EnvDBRole, config.DefaultDBRole))
			if err != nil {
				return cli.Usage(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			res, err := postgres.Migrate(ctx, cli.Env(config.EnvDatabaseURL, config.DefaultDatabaseURL),
				postgres.MigrateOptions{Role: role, Member: member})
			if errors.Is(err, postgres.ErrUnsafeRole) || errors.Is(err, postgres.ErrInvalidURL) {
				return cli.Usage(err)
			}
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				log.Warn().Msg(w)
			}
			log.Info().Int32("from_version", res.From).Int32("to_version", res.To).Str("role", role.String()).Msg("migrated")
			return nil
		},
	}
	cmd.Flags().StringVar(&member, "grant-to", "", "login user to make a member of DB_ROLE (default the migrating user)")
	return cmd
}

// parseConnectTimeout reads --connect-timeout: a Go duration, 0 or more.
func parseConnectTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: connect-timeout %q: want a duration of 0 or more, such as 60s", config.ErrInvalid, s)
	}
	return d, nil
}

// run wires the worker top to bottom and shuts it down in reverse order.
func run(ctx context.Context, cfg *config.Worker, connectTimeoutFlag string) error {
	if err := cfg.Finish(); err != nil {
		return cli.Usage(err)
	}
	if err := tracing.Check(os.Getenv); err != nil {
		return cli.Usage(err)
	}
	// Every job logs a line: they are written together every 100 ms
	// (warnings and errors at once), not one write call per job.
	logOut := logging.NewBuffered(os.Stderr, 100*time.Millisecond)
	defer logOut.Close() // last of all
	log, err := logging.New(logOut, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return cli.Usage(err)
	}
	log = log.Hook(tracing.Hook{}) // trace_id and span_id on the job lines
	connectTimeout, err := parseConnectTimeout(connectTimeoutFlag)
	if err != nil {
		return cli.Usage(err)
	}
	log.Info().Object("config", cfg).Msg("starting worker")
	// Spans are flushed last, after the pool has closed, so that the last
	// batches' spans go out; bounded so that a dead collector cannot hold
	// up the exit.
	stopTracing, err := tracing.Start(ctx, os.Getenv, tracing.Options{Service: "tickerq-worker", Log: log})
	if err != nil {
		return cli.Usage(err)
	}
	defer stopTracing()
	// go-redis says each failed dial, several a second while Redis is
	// away: at debug, since the start-up's attempt lines and then the
	// running worker's watch (broker.Watch) say it once.
	redis.SetLogger(logging.Redis{L: log, Level: zerolog.DebugLevel})
	// Libraries that use the standard logger (asynq's metrics collector)
	// log through zerolog too.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log.With().Str("component", "stdlog").Logger())

	// The admin server comes first, so an orchestrator sees the process
	// alive (/healthz) and what it waits for (/readyz) while it connects.
	starter := admin.NewStarter()
	if cfg.AdminAddr != "" {
		var h http.Handler = starter
		if cfg.Profiling {
			h = admin.WithProfiling(h)
		}
		adm, err := admin.Start(cfg.AdminAddr, h, log)
		if err != nil {
			return err
		}
		log.Info().Str("addr", adm.Addr()).Msg("admin server listening")
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = adm.Shutdown(ctx)
		}()
	}
	// The first connections are retried with backoff: services started
	// together with the worker may take a while to answer.
	// --connect-timeout is one budget for every stage below together.
	retry := startup.Options{
		Deadline: time.Now().Add(connectTimeout),
		Redactor: config.NewRedactor("", cfg.DatabaseURL, cfg.RedisURL),
		Log:      log,
		OnAttempt: func(name string, n int) {
			starter.SetState(fmt.Sprintf("waiting for %s (attempt %d)", name, n))
		},
	}
	// connect runs one stage under that budget; quit says a signal came
	// while it waited, and the worker then exits 0.
	connect := func(name string, fn func(context.Context) error) (quit bool, err error) {
		opt := retry
		opt.Name = name
		err = startup.Connect(ctx, opt, fn)
		if ctx.Err() != nil {
			log.Info().Msg("signal received while connecting: exiting")
			return true, nil
		}
		return false, err
	}

	var poolSize int32 // zero: the default, or the URL's pool_max_conns
	if cfg.BenchOneTxPerJob {
		poolSize = int32(cfg.Concurrency) + 2
	}
	var db *postgres.DB
	if quit, err := connect("postgres", func(ctx context.Context) error {
		var err error
		db, err = postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Role: cfg.Role, MaxConns: poolSize, Logger: log})
		if errors.Is(err, postgres.ErrUnsafeRole) || errors.Is(err, postgres.ErrInvalidURL) {
			return startup.Permanent(cli.Usage(err))
		}
		return err
	}); quit || err != nil {
		return err // it names postgres
	}
	defer db.Close() // last: the committer has written everything by then

	rdb, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("%s: unsupported connection type %T", config.EnvRedisURL, cfg.Redis)
	}
	defer rdb.Close()
	if quit, err := connect("redis", func(ctx context.Context) error { return pingRedis(ctx, rdb) }); quit || err != nil {
		return err
	}
	warnRedisSettings(ctx, rdb, log)

	m := metrics.New(db)
	inspector := asynq.NewInspector(cfg.Redis)
	defer inspector.Close()
	m.Registry().MustRegister(asynqmetrics.NewQueueMetricsCollector(inspector))

	// Every job's row goes through the committer: the rows of concurrent
	// jobs share a few transactions on the pool's few connections.
	var store tasks.PriceStore = db
	if !cfg.BenchOneTxPerJob {
		committer := postgres.NewCommitter(db, postgres.CommitterConfig{
			ReadyRows: readyRows(cfg.Concurrency), Observer: m,
		})
		m.RegisterCommitter(committer.Pending)
		defer closeCommitter(ctx, committer, cfg.ShutdownTimeout, log) // after the handlers, before the pool
		store = committer
		log.Info().Int32("pool_max_conns", db.MaxConns()).Int("flushers", committer.Flushers()).
			Msgf("postgres: this worker opens at most %d connections whatever its concurrency (%d batch writers and a spare); N workers open N × %d",
				db.MaxConns(), committer.Flushers(), db.MaxConns())
	} else {
		log.Warn().Int32("pool_max_conns", db.MaxConns()).Msg("benchmark mode: one transaction per job")
	}
	quotes, err := quote.New(quote.Config{
		BaseURL:  cfg.QuoteAPIURL,
		APIKey:   string(cfg.QuoteAPIKey),
		Timeout:  cfg.QuoteTimeout,
		MaxConns: cfg.Concurrency,
		Observe:  m.ObserveQuote,
	})
	if err != nil {
		return cli.Usage(err)
	}
	defer quotes.Close()
	// The upstream's rate limit and pauses, shared with every worker on
	// this Redis for the same API URL and key. Its subscription is a new
	// connection to Redis, which may have gone away since the ping: it is
	// retried like the first connection (the chaos suite saw a worker exit
	// 1 when Redis was killed in between).
	var limiter *ratelimit.Limiter
	if quit, err := connect("redis", func(ctx context.Context) error {
		var err error
		limiter, err = ratelimit.Start(ctx, ratelimit.Config{
			Redis: rdb, BaseURL: cfg.QuoteAPIURL, APIKey: string(cfg.QuoteAPIKey), Rate: cfg.QuoteRateLimit,
			Observer: m, Logger: log,
		})
		return err
	}); quit || err != nil {
		return err
	}
	defer limiter.Close() // after the handlers have stopped

	// Connected: /readyz now runs its checks, and /metrics answers.
	starter.Ready(admin.Handler([]admin.Check{
		{Name: "redis", Fn: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		{Name: "postgres", Fn: db.Ping},
	}, m.Handler()))

	// One line when Redis stops answering and one when it is back; asynq's
	// errors in between, several a second, go to debug.
	outage := &logging.Outage{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		broker.Watch(watchCtx, rdb, broker.WatchInterval, outage, log)
	}()
	defer func() { stopWatch(); <-watched }()

	asynqCfg := config.AsynqServer(cfg.Concurrency, cfg.Queues, cfg.ShutdownTimeout)
	// The job line says when a task is archived or dropped: asynq's own
	// warning about it is left out (logging.Reported), its others kept.
	reported := &logging.Reported{}
	asynqCfg.Logger = logging.Asynq{L: log.With().Str("component", "asynq").Logger(), Reported: reported, Outage: outage}
	asynqCfg.LogLevel = logging.AsynqLevel(log.GetLevel())
	srv := asynq.NewServer(cfg.Redis, asynqCfg)
	mux := asynq.NewServeMux()
	mux.Use(middleware.Observe(log, m, reported))
	mux.Handle(tasks.TypeQuoteFetch, tasks.NewQuoteFetchHandler(quotes, store, tasks.WithRateLimiter(limiter)))
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	log.Info().Int("concurrency", cfg.Concurrency).Str("queues", config.FormatQueues(cfg.Queues)).Msg("worker running")

	<-ctx.Done()
	log.Info().Dur("shutdown_timeout_ms", cfg.ShutdownTimeout).Msg("signal received: stopping fetch, draining in-flight jobs")
	srv.Shutdown() // stops fetching, waits for in-flight jobs up to ShutdownTimeout
	log.Info().Msg("worker stopped")
	return nil
}

// readyRows is the batch size at which the committer stops waiting for
// more rows: half the worker's concurrency (see postgres.CommitterConfig).
func readyRows(concurrency int) int {
	return max(1, concurrency/2)
}

// closeCommitter writes what the committer still holds once asynq has
// drained the handlers; it is bounded like the drain.
func closeCommitter(ctx context.Context, c *postgres.Committer, timeout time.Duration, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		log.Error().Err(err).Msg("committer did not finish its last writes; their jobs will be retried")
		return
	}
	log.Info().Msg("committer flushed and stopped")
}

// warnRedisSettings says once, at start-up, when the broker's settings could
// evict or lose tasks.
func warnRedisSettings(ctx context.Context, rdb redis.UniversalClient, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := broker.Read(ctx, rdb)
	if err != nil {
		log.Warn().Err(err).Msg("could not check redis for settings that lose tasks (maxmemory-policy, persistence)")
		return
	}
	for _, w := range s.Warnings() {
		log.Warn().Str("maxmemory_policy", s.MaxMemoryPolicy).Str("appendonly", s.AppendOnly).Str("save", s.Save).Msg(w)
	}
}

func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
