// Package config reads the worker's configuration: defaults, then the
// environment, then flags of the same meaning. Secrets are masked when the
// configuration is logged.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/ratelimit"
	"github.com/tickerq/tickerq/tasks"
)

// Defaults of the contract.
const (
	DefaultRedisURL        = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL     = "postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable"
	DefaultDBRole          = "tickerq_writer"
	DefaultQuoteAPIURL     = "http://127.0.0.1:8000"
	DefaultConcurrency     = 100
	DefaultQueues          = "critical=6,default=3,low=1"
	DefaultAdminAddr       = "127.0.0.1:8081"
	DefaultShutdownTimeout = 25 * time.Second
	DefaultQuoteTimeout    = 10 * time.Second
	DefaultUIAddr          = "127.0.0.1:8080"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	// DefaultConnectTimeout is how long a starting worker retries its first
	// connections, as --connect-timeout reads it.
	DefaultConnectTimeout = "60s"
)

// AsynqServer is the worker's asynq server configuration, without a
// logger: tickerq's failure classes and retry delays, and how often it
// polls Redis. The bench's baseline servers take it too, so that they are
// measured as the worker is.
func AsynqServer(concurrency int, queues map[string]int, shutdownTimeout time.Duration) asynq.Config {
	return asynq.Config{
		Concurrency:     concurrency,
		Queues:          queues,
		ShutdownTimeout: shutdownTimeout,
		IsFailure:       tasks.IsFailure,
		RetryDelayFunc:  tasks.RetryDelay,
		// With every queue empty, asynq sleeps between 0.5 and 1.5 times
		// this before it looks again, so it is the delay an idle worker
		// adds to a new task (asynq's default of 1 s would add ~1 s); an
		// idle worker then asks Redis ~40 times a second.
		TaskCheckInterval: 25 * time.Millisecond,
		// How often scheduled and retrying tasks whose time has come are
		// moved to pending.
		DelayedTaskCheckInterval: time.Second,
		// How often completed tasks whose retention has run out are deleted.
		// Each check deletes every expired one, JanitorBatchSize per Redis
		// script (a bigger batch blocks Redis longer), so asynq's 8 s
		// default keeps up too, but lets ~8 s of completions (1600 tasks at
		// 200/s) pile up between checks; 1 s keeps that small and even.
		JanitorInterval:  time.Second,
		JanitorBatchSize: 100,
	}
}

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Secret is a string that logs as "***".
type Secret string

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// Worker is the worker's configuration.
type Worker struct {
	RedisURL     string
	DatabaseURL  string
	DBRole       string
	QuoteAPIURL  string
	QuoteAPIKey  Secret
	QuoteTimeout time.Duration
	// QuoteRateLimit is the limit of quote requests shared by every worker
	// on the same Redis, QUOTE_API_URL and key; zero: none.
	QuoteRateLimit ratelimit.Rate
	// Role is DBRole checked by Finish, and Redis is RedisURL parsed by it.
	Role            postgres.Role
	Redis           asynq.RedisConnOpt
	Concurrency     int
	Queues          map[string]int
	AdminAddr       string
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string
	// BenchOneTxPerJob writes each job's row in a transaction of its own
	// (postgres.DB.SavePrice) on a pool sized to the concurrency, the shape
	// of the write path before group commit, kept only so that make bench
	// can compare the two. Hidden flag.
	BenchOneTxPerJob bool
	// Profiling serves Go's profiler under /debug/pprof/ on the admin
	// address. Hidden flag.
	Profiling bool

	queues         string
	concurrency    string
	quoteRateLimit string
}

// BindWorker registers the worker's flags on fs, with defaults taken from
// the environment, and returns the configuration they fill. Call Finish after
// parsing.
func BindWorker(fs *pflag.FlagSet) *Worker {
	w := &Worker{
		RedisURL:    cli.Env(EnvRedisURL, DefaultRedisURL),
		DatabaseURL: cli.Env(EnvDatabaseURL, DefaultDatabaseURL),
		DBRole:      cli.Env(EnvDBRole, DefaultDBRole),
		QuoteAPIURL: cli.Env(EnvQuoteAPIURL, DefaultQuoteAPIURL),
		QuoteAPIKey: Secret(cli.Env(EnvQuoteAPIKey, "")),
		LogLevel:    cli.Env(EnvLogLevel, DefaultLogLevel),
		LogFormat:   cli.Env(EnvLogFormat, DefaultLogFormat),
		AdminAddr:   envAllowEmpty(EnvAdminAddr, DefaultAdminAddr),
	}
	fs.StringVar(&w.concurrency, "concurrency", cli.Env(EnvWorkerConcurrency, strconv.Itoa(DefaultConcurrency)), "jobs in flight in this process")
	FlagFromEnv(fs, "concurrency", EnvWorkerConcurrency)
	fs.StringVar(&w.queues, "queues", cli.Env(EnvWorkerQueues, DefaultQueues), "queues and their weights, name=weight,...")
	FlagFromEnv(fs, "queues", EnvWorkerQueues)
	fs.DurationVar(&w.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGTERM/SIGINT, how long in-flight jobs may run before they are handed back to the queue")
	fs.StringVar(&w.AdminAddr, "admin-addr", w.AdminAddr, "address of /healthz, /readyz and /metrics; empty disables them")
	FlagFromEnv(fs, "admin-addr", EnvAdminAddr)
	fs.DurationVar(&w.QuoteTimeout, "quote-timeout", DefaultQuoteTimeout, "timeout of one quote API request")
	fs.StringVar(&w.quoteRateLimit, "quote-rate-limit", cli.Env(EnvQuoteRateLimit, ""), "quote requests allowed across all workers sharing the Redis, API URL and key: N/s, N/m or N/h; empty = no limit")
	FlagFromEnv(fs, "quote-rate-limit", EnvQuoteRateLimit)
	fs.BoolVar(&w.BenchOneTxPerJob, benchOneTxPerJobFlag, false, "benchmark only: write each job in a transaction of its own on a pool of concurrency+2 connections, not through the committer")
	_ = fs.MarkHidden(benchOneTxPerJobFlag)
	fs.BoolVar(&w.Profiling, "pprof", false, "serve Go's profiler under /debug/pprof/ on the admin address")
	_ = fs.MarkHidden("pprof")
	return w
}

// benchOneTxPerJobFlag is the hidden flag behind Worker.BenchOneTxPerJob.
const benchOneTxPerJobFlag = "bench-one-tx-per-job"

// Finish validates everything flags and environment gave, before any
// connection: every error wraps ErrInvalid (exit 2) and names the setting.
func (w *Worker) Finish() error {
	n, err := strconv.Atoi(strings.TrimSpace(w.concurrency))
	if err != nil || n < 1 || n > 10000 {
		return fmt.Errorf("%w: concurrency %q: want a whole number from 1 to 10000", ErrInvalid, w.concurrency)
	}
	w.Concurrency = n
	if w.Queues, err = ParseQueues(w.queues); err != nil {
		return err
	}
	if w.ShutdownTimeout <= 0 {
		return fmt.Errorf("%w: shutdown-timeout must be positive", ErrInvalid)
	}
	if w.QuoteTimeout <= 0 {
		return fmt.Errorf("%w: quote-timeout must be positive", ErrInvalid)
	}
	if w.QuoteRateLimit, err = ratelimit.ParseRate(w.quoteRateLimit); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, EnvQuoteRateLimit, err)
	}
	// The rest is checked here too, before any connection is made, so that a
	// bad setting exits 2 whether or not Redis and Postgres answer.
	if err := CheckQuoteAPIURL(w.QuoteAPIURL); err != nil {
		return err
	}
	if err := CheckQuoteAPIKey(string(w.QuoteAPIKey)); err != nil {
		return err
	}
	if w.AdminAddr != "" {
		if err := checkAddr(EnvAdminAddr, w.AdminAddr); err != nil {
			return err
		}
	}
	if w.Role, err = postgres.ParseRole(w.DBRole); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err) // names DB_ROLE
	}
	if _, err := pgxpool.ParseConfig(w.DatabaseURL); err != nil {
		// pgx masks the password in its message.
		return fmt.Errorf("%w: %s %q: %w", ErrInvalid, EnvDatabaseURL, RedactURL(w.DatabaseURL), err)
	}
	if w.Redis, err = ParseRedisURL(EnvRedisURL, w.RedisURL); err != nil {
		return err
	}
	if _, err := logging.New(io.Discard, w.LogLevel, w.LogFormat); err != nil {
		return err
	}
	return nil
}

// CheckQuoteAPIURL reports whether raw is a usable QUOTE_API_URL:
// http(s)://host[:port][/path]. The error shows the URL without its password.
func CheckQuoteAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %s %q: want http(s)://host[:port]", ErrInvalid, EnvQuoteAPIURL, RedactURL(raw))
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: %s %q: port must be a number from 1 to 65535", ErrInvalid, EnvQuoteAPIURL, RedactURL(raw))
		}
	}
	return nil
}

// CheckQuoteAPIKey rejects an API key that cannot be sent as a header value
// (control characters) or that carries surrounding white space, a sign of a
// badly pasted key. The error never shows the key.
func CheckQuoteAPIKey(key string) error {
	if strings.TrimSpace(key) != key {
		return fmt.Errorf("%w: %s has leading or trailing white space (value not shown)", ErrInvalid, EnvQuoteAPIKey)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: %s contains a control character (value not shown)", ErrInvalid, EnvQuoteAPIKey)
	}
	return nil
}

// checkAddr reports whether addr is host:port with a numeric port.
func checkAddr(name, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %s %q: want host:port: %w", ErrInvalid, name, addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%w: %s %q: port must be a number from 0 to 65535", ErrInvalid, name, addr)
	}
	return nil
}

// MarshalZerologObject logs the configuration once at start-up, without
// secrets or database passwords.
func (w *Worker) MarshalZerologObject(e *zerolog.Event) {
	e.Str("redis_url", RedactURL(w.RedisURL)).
		Str("database_url", RedactURL(w.DatabaseURL)).
		Str("db_role", w.DBRole).
		Str("quote_api_url", RedactURL(w.QuoteAPIURL)).
		Bool("quote_api_key_set", w.QuoteAPIKey != "").
		Dur("quote_timeout_ms", w.QuoteTimeout).
		Str("quote_rate_limit", w.QuoteRateLimit.String()).
		Int("concurrency", w.Concurrency).
		Str("queues", FormatQueues(w.Queues)).
		Str("admin_addr", w.AdminAddr).
		Dur("shutdown_timeout_ms", w.ShutdownTimeout)
	if w.BenchOneTxPerJob {
		e.Bool("bench_one_tx_per_job", true)
	}
}

// ParseQueues parses "critical=6,default=3,low=1". A name without a weight
// gets weight 1.
func ParseQueues(s string) (map[string]int, error) {
	queues := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, hasWeight := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		w := 1
		if hasWeight {
			var err error
			if w, err = strconv.Atoi(strings.TrimSpace(weight)); err != nil || w < 1 {
				return nil, fmt.Errorf("%w: queues %q: weight of %q must be a whole number >= 1", ErrInvalid, s, name)
			}
		}
		if name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: queues %q: bad queue name %q", ErrInvalid, s, name)
		}
		if _, dup := queues[name]; dup {
			return nil, fmt.Errorf("%w: queues %q: %q listed twice", ErrInvalid, s, name)
		}
		queues[name] = w
	}
	if len(queues) == 0 {
		return nil, fmt.Errorf("%w: queues %q: no queue", ErrInvalid, s)
	}
	return queues, nil
}

// FormatQueues is the inverse of ParseQueues, sorted by name.
func FormatQueues(q map[string]int) string {
	parts := make([]string, 0, len(q))
	for name, w := range q {
		parts = append(parts, fmt.Sprintf("%s=%d", name, w))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func envAllowEmpty(name, def string) string {
	if v, ok := lookupEnv(name); ok {
		return v
	}
	return def
}
