// Command producer enqueues quote-fetch jobs for stock symbols, by hand
// (`producer enqueue`) or on a timetable (`producer schedule`, with the
// market calendar of `producer sessions`), and reports on and acts on the
// queues that hold them: `producer stats`, `producer wait`, `producer queue`,
// `producer tasks`, `producer pause` / `unpause`, and `producer ui`, which
// serves the asynqmon web UI. Data goes to stdout, errors and logs to
// stderr; it exits 0 on success, 1 on a runtime failure and 2 on bad usage
// or invalid input.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/queue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, rootCmd(), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the persistent flags every subcommand shares, and what load
// made of them.
type globals struct {
	redisURL string
	loaded   *env // set by load, for explain
}

func rootCmd() *cobra.Command {
	var g globals
	cmd := &cobra.Command{
		Use:   "producer",
		Short: "Enqueue quote-fetch jobs and watch their queues",
		Long: `producer enqueues quote-fetch jobs for stock symbols in Redis, by hand
(enqueue) or on a timetable (schedule, with the market calendar of sessions),
and reports on and acts on the asynq queues that hold them (stats, wait,
queue list and delete, tasks, pause, unpause); ui serves the asynqmon web UI
over them.

` + config.EnvHelp(config.ProducerEnv) + `

Tracing: enqueue and schedule read the standard OpenTelemetry variables
(OTEL_EXPORTER_OTLP_ENDPOINT switches it on; off by default): a root span
per task, whose trace the worker's job continues.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid input.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("missing command: want enqueue, stats, wait, queue, tasks, pause, unpause, ui, schedule or sessions (see producer --help)")
		},
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	cmd.PersistentFlags().StringVar(&g.redisURL, "redis-url", "", "Redis to use")
	config.FlagFromEnv(cmd.PersistentFlags(), "redis-url", config.EnvRedisURL)
	cmd.AddCommand(enqueueCmd(&g), statsCmd(&g), waitCmd(&g), uiCmd(&g), sessionsCmd(&g),
		queueCmd(&g), tasksCmd(&g), pauseCmd(&g), unpauseCmd(&g), scheduleCmd(&g))
	explainErrors(cmd, &g)
	return cmd
}

// explainErrors makes every command under cmd pass its error through
// g.explain: the one place that words what commands meet in Redis.
func explainErrors(cmd *cobra.Command, g *globals) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			return g.explain(c.Context(), run(c, args))
		}
	}
	for _, c := range cmd.Commands() {
		explainErrors(c, g)
	}
}

// explain rewords err, the error of a command that loaded its settings:
// when Redis could not be reached, whatever the command was doing
// (queue.Unreachable), the line says so first, then what the command said
// of its own (withUnreachable); and the password of the Redis URL is hidden
// from any error.
func (g *globals) explain(ctx context.Context, err error) error {
	if err == nil || g.loaded == nil {
		return err
	}
	if u := queue.Unreachable(ctx, g.loaded.redis, err); u != nil {
		err = withUnreachable(u, err)
	}
	return g.loaded.redact.Error(err)
}

// withUnreachable puts u, which says where Redis is and why it could not be
// reached, before err, the command's error that found out, so that the
// cause is said once. An err whose text holds that cause only led up to it
// ("stats: list queues: dial tcp ...") and gives way to u. An err that
// wraps the cause without wording it gives an account of its own (enqueue's
// "12 of 12 symbols not enqueued: ..."), which follows u on the line.
func withUnreachable(u *queue.UnreachableError, err error) error {
	if strings.Contains(err.Error(), u.Err.Error()) {
		return u
	}
	return fmt.Errorf("%w; %w", u, err)
}

// env is what a subcommand needs once its flags are checked.
type env struct {
	redis  asynq.RedisConnOpt
	redact *config.Redactor // of the Redis URL's password
	log    zerolog.Logger   // to stderr; stdout is for data
}

// load reads the logging settings and the Redis URL (--redis-url, else
// REDIS_URL, else the default). Both are usage errors when invalid.
func (g *globals) load(cmd *cobra.Command) (env, error) {
	log, err := config.Logger(cmd.ErrOrStderr())
	if err != nil {
		return env{}, cli.Usage(err)
	}
	source, raw := "--redis-url", g.redisURL
	if !cmd.Flags().Changed("redis-url") {
		source, raw = config.EnvRedisURL, cli.Env(config.EnvRedisURL, config.DefaultRedisURL)
	}
	opt, err := config.ParseRedisURL(source, raw)
	if err != nil {
		return env{}, cli.Usage(err)
	}
	redis.SetLogger(logging.Redis{L: log, Level: zerolog.DebugLevel})
	log.Debug().Str("redis_url", config.RedactURL(raw)).Msg("producer configured")
	e := env{redis: opt, redact: config.NewRedactor("", raw), log: log}
	g.loaded = &e
	return e, nil
}

// checkQueueName rejects names asynq would accept but people would not mean,
// given with the --queue flag.
func checkQueueName(name string) error { return checkQueueArg("--queue", name) }

// inspect is load plus an Inspector on the Redis it names; close it when
// done.
func (g *globals) inspect(cmd *cobra.Command) (env, *asynq.Inspector, error) {
	e, err := g.load(cmd)
	if err != nil {
		return e, nil, err
	}
	return e, asynq.NewInspector(e.redis), nil
}

// oneQueueArg is the Args of a command that takes one queue name.
func oneQueueArg(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return cli.Usagef("want exactly one queue name, got %d arguments", len(args))
	}
	return checkQueueArg("queue", args[0])
}

// checkQueueArg is checkQueueName for a queue given as what (a flag or an
// argument), which the error names.
func checkQueueArg(what, name string) error {
	if name == "" || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		return cli.Usagef("%s %q: want a non-empty name without whitespace", what, name)
	}
	return nil
}

// openInput opens the file that flag names ('-' is stdin). A file that
// cannot be opened, or a directory, is invalid input (exit 2), named in one
// line.
func openInput(cmd *cobra.Command, flag, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	file, err := os.Open(name)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is named once, below
		}
		return nil, cli.Usagef("--%s %s: %w", flag, name, err)
	}
	if info, err := file.Stat(); err == nil && info.IsDir() {
		file.Close()
		return nil, cli.Usagef("--%s %s: is a directory; want a file", flag, name)
	}
	return file, nil
}

// interrupted rewords the error of work cut short by SIGINT or SIGTERM.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}
