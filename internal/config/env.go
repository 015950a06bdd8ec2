package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

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
// The programs' --help renders its "Environment:" paragraph from these lists
// and Vars (EnvHelp). The OpenTelemetry family (OTEL_*, read by
// internal/tracing and the SDK in worker, producer enqueue and producer
// schedule) is apart: its names are the specification's, and --help
// describes it in a "Tracing:" paragraph.
var (
	// WorkerEnv is read by `worker`.
	WorkerEnv = []string{
		EnvRedisURL, EnvDatabaseURL, EnvDBRole, EnvQuoteAPIURL, EnvQuoteAPIKey, EnvQuoteRateLimit,
		EnvWorkerConcurrency, EnvWorkerQueues, EnvWorkerConnectTimeout, EnvAdminAddr, EnvLogLevel, EnvLogFormat,
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

// Var is one environment variable as --help shows it.
type Var struct {
	Name string
	// Default is what the program uses when the variable is unset or
	// empty, as a user would type it, or a word for none ("empty").
	Default string
	// Meaning says in one line what it sets.
	Meaning string
}

// Vars are the variables of the contract that tickerq reads, and the web
// UI's own, with their defaults and meanings: the one table behind every
// program's "Environment:" paragraph (EnvHelp) and the defaults its flags
// show (FlagFromEnv).
var Vars = []Var{
	{EnvRedisURL, DefaultRedisURL, "Redis: redis://, rediss://, redis-socket:// or redis-sentinel://"},
	{EnvDatabaseURL, DefaultDatabaseURL, "Postgres, as the login user; pool settings may ride in the URL (pool_max_conns)"},
	{EnvDBRole, DefaultDBRole, "role every job's SQL runs under: lower-case letters, digits and _"},
	{EnvQuoteAPIURL, DefaultQuoteAPIURL, "base URL of the quote API"},
	{EnvQuoteAPIKey, "empty", "quote API key, in header X-Finnhub-Token; never logged"},
	{EnvWorkerConcurrency, strconv.Itoa(DefaultConcurrency), "jobs in flight per worker process"},
	{EnvWorkerQueues, DefaultQueues, "queues to serve and their weights, name=weight,..."},
	{EnvAdminAddr, DefaultAdminAddr, "worker's /healthz, /readyz and /metrics; empty disables them"},
	{EnvQuoteRateLimit, "no limit", "quote requests across all workers on the Redis, API URL and key: N/s, N/m or N/h"},
	{EnvWorkerConnectTimeout, DefaultConnectTimeout, "how long the worker retries its first connections; 0 tries once"},
	{EnvUIAddr, DefaultUIAddr, "host:port the web UI listens on"},
	{EnvUIUser, "empty", "basic auth user of the web UI; set with the password, or neither"},
	{EnvUIPassword, "empty", "basic auth password of the web UI; never logged"},
	{EnvUIReadOnly, "false", "true: the web UI shows, but changes no task or queue"},
	{EnvLogLevel, DefaultLogLevel, "debug, info, warn or error"},
	{EnvLogFormat, DefaultLogFormat, "json, or console for people"},
}

// LookupVar returns the row of Vars named name.
func LookupVar(name string) (Var, bool) {
	for _, v := range Vars {
		if v.Name == name {
			return v, true
		}
	}
	return Var{}, false
}

// mustVar is LookupVar for names spelled in this package's lists: a name
// missing from Vars is a programming error.
func mustVar(name string) Var {
	v, ok := LookupVar(name)
	if !ok {
		panic("config: " + name + " is not in config.Vars")
	}
	return v
}

// helpDefaultWidth caps the default column of EnvHelp: a longer default
// (DATABASE_URL's) runs into the meaning's column instead of pushing every
// line wide.
const helpDefaultWidth = 28

// EnvHelp renders the "Environment:" paragraph of a program's --help that
// reads names (one of the lists above): a line per variable, in order,
// "  NAME  default  meaning", aligned.
func EnvHelp(names []string) string {
	vars := make([]Var, len(names))
	nameW, defW := 0, 0
	for i, n := range names {
		vars[i] = mustVar(n)
		nameW = max(nameW, len(n))
		if d := len(vars[i].Default); d <= helpDefaultWidth {
			defW = max(defW, d)
		}
	}
	var b strings.Builder
	b.WriteString("Environment:")
	for _, v := range vars {
		fmt.Fprintf(&b, "\n  %-*s  %-*s  %s", nameW, v.Name, defW, v.Default, v.Meaning)
	}
	return b.String()
}

// FlagFromEnv notes in the usage of fs's flag that its default comes from
// the variable env: "(default D, from ENV)", D being env's default in
// Vars. It shows the built-in default, not what the environment holds now
// (which may be a secret), and replaces pflag's own "(default ...)".
func FlagFromEnv(fs *pflag.FlagSet, flag, env string) {
	f := fs.Lookup(flag)
	if f == nil {
		panic("config: no flag --" + flag)
	}
	f.Usage += fmt.Sprintf(" (default %s, from %s)", mustVar(env).Default, env)
	// pflag prints "(default ...)" unless DefValue is its type's zero.
	switch f.Value.Type() {
	case "bool":
		f.DefValue = "false"
	case "duration":
		f.DefValue = "0s"
	case "string":
		f.DefValue = ""
	default:
		f.DefValue = "0"
	}
}

// Logger builds a logger writing to w from LOG_LEVEL and LOG_FORMAT, for the
// commands that take no other logging configuration.
func Logger(w io.Writer) (zerolog.Logger, error) {
	return logging.New(w, cli.Env(EnvLogLevel, DefaultLogLevel), cli.Env(EnvLogFormat, DefaultLogFormat))
}
