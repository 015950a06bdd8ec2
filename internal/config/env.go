package config

import (
	"io"

	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/logging"
)

// Names of the environment variables of the contract (shared/CONTRACT.md,
// "Environment"), plus the web UI's own settings. This file is the one place
// that spells them: programs, tests and deployment checks (the test of
// docker-compose.yml in internal/compose) use these constants and lists.
const (
	EnvRedisURL          = "REDIS_URL"
	EnvDatabaseURL       = "DATABASE_URL"
	EnvDBRole            = "DB_ROLE"
	EnvQuoteAPIURL       = "QUOTE_API_URL"
	EnvQuoteAPIKey       = "QUOTE_API_KEY"
	EnvWorkerConcurrency = "WORKER_CONCURRENCY"
	EnvWorkerQueues      = "WORKER_QUEUES"
	EnvAdminAddr         = "ADMIN_ADDR"
	EnvQuoteRateLimit    = "QUOTE_RATE_LIMIT"
	// EnvWorkerConnectTimeout is the default of worker --connect-timeout: how
	// long a starting worker retries its first connections.
	EnvWorkerConnectTimeout = "WORKER_CONNECT_TIMEOUT"
	EnvUIAddr               = "UI_ADDR"
	EnvLogLevel             = "LOG_LEVEL"
	EnvLogFormat            = "LOG_FORMAT"

	// Read by `producer ui` only. EnvUIUser and EnvUIPassword (both or
	// neither) require HTTP basic authentication; EnvUIReadOnly=true is the
	// default of --read-only.
	EnvUIUser     = "UI_USER"
	EnvUIPassword = "UI_PASSWORD"
	EnvUIReadOnly = "UI_READ_ONLY"
)

// What each program reads: every variable it looks at, and nothing else.
// Keep these in step with the programs' --help ("Environment: ..."). The
// OpenTelemetry family (OTEL_*, read by internal/tracing and the SDK in
// worker, producer enqueue and producer schedule) is apart: its names are
// the specification's, and --help describes it in a "Tracing:" paragraph.
var (
	// WorkerEnv is read by `worker`.
	WorkerEnv = []string{
		EnvRedisURL, EnvDatabaseURL, EnvDBRole, EnvQuoteAPIURL, EnvQuoteAPIKey,
		EnvWorkerConcurrency, EnvWorkerQueues, EnvAdminAddr, EnvQuoteRateLimit, EnvLogLevel, EnvLogFormat,
		EnvWorkerConnectTimeout,
	}
	// MigrateEnv is read by `worker migrate`.
	MigrateEnv = []string{EnvDatabaseURL, EnvDBRole, EnvLogLevel, EnvLogFormat}
	// ProducerEnv is read by `producer enqueue`, `producer stats` and
	// `producer wait`.
	ProducerEnv = []string{EnvRedisURL, EnvLogLevel, EnvLogFormat}
	// UIEnv is read by `producer ui`.
	UIEnv = []string{
		EnvRedisURL, EnvUIAddr, EnvUIUser, EnvUIPassword, EnvUIReadOnly, EnvLogLevel, EnvLogFormat,
	}
	// QuoteserverEnv is read by `quoteserver`.
	QuoteserverEnv = []string{EnvQuoteAPIKey, EnvLogLevel, EnvLogFormat}
)

// Logger builds a logger writing to w from LOG_LEVEL and LOG_FORMAT, for the
// commands that take no other logging configuration.
func Logger(w io.Writer) (zerolog.Logger, error) {
	return logging.New(w, cli.Env(EnvLogLevel, DefaultLogLevel), cli.Env(EnvLogFormat, DefaultLogFormat))
}
