package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/progress"
	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/tasks"
)

// maxFailureLines caps the per-task failure lines on stderr of the task
// operations; their final error line still counts them all.
const maxFailureLines = 10

// Bounds of what enqueue writes on stderr, so that no line grows with the
// input: the error text of one symbol, a shown symbol, how many invalid
// symbols one line names, and how many the closing line names when there
// are more.
const (
	maxErrText         = 200
	maxSymbolText      = 40
	maxNamedInError    = 10
	namedInClosingLine = 3
)

// clockSkew is how far in the past --at may be and still be taken (to run
// at once): the clocks of this host and of whoever chose the time may
// differ a little.
const clockSkew = 5 * time.Second

type enqueueFlags struct {
	queue      string
	in         time.Duration
	at         string
	unique     time.Duration
	maxRetry   int
	timeout    time.Duration
	file       string
	json       bool
	failedFile string
	idPrefix   string
}

func enqueueCmd(g *globals) *cobra.Command {
	var f enqueueFlags
	cmd := &cobra.Command{
		Use:   "enqueue [flags] SYMBOL...",
		Short: "Enqueue one quote-fetch job per symbol",
		Long: `enqueue validates every symbol (from the arguments and --file) and, if all
are valid, enqueues one quote-fetch job for each. If any symbol is invalid it
names each bad one, enqueues nothing and exits 2.

A symbol is upper-cased, then must be 1-15 characters of A-Z, 0-9, '.' and
'-', starting with a letter or digit (BRK.B, RDS-A). With more than 10
invalid symbols each is named on its own stderr line.

It prints one line per task: ID<TAB>SYMBOL<TAB>QUEUE, or with --json one
object per line: {"id":...,"symbol":...,"queue":...}.

--unique D (asynq's Unique option) takes a lock per queue and symbol when
the task is enqueued, for D (with --in or --at, for the delay plus D).
While the lock is held, enqueue skips the symbol in that queue: no task, a
"skipped" line on stderr, and exit 0. The lock is released when the task
completes successfully or is deleted. It is still held while the task is
pending, scheduled, active or waiting to retry, and after it is archived
(failed for good), until D runs out; once D runs out, the symbol is enqueued
again even if the first task has not run yet. So --unique 1h means: no
second task for the symbol in the queue within the hour while the first
has not completed (as Sidekiq Enterprise's unique jobs with unique_until
success); it does not stop a new task once the first completed.

Each symbol ends enqueued, failed (certainly not in Redis: no connection, or
an error from Redis) or unknown (the connection was lost mid-call: the task
may be in Redis). Every failed and unknown symbol gets a stderr line, or
with --failed-file F is written to F, one a line, ready for --file F; after a
lost connection no more symbols are tried (they are failed). Exit 0 when all
are enqueued (or skipped, or already enqueued), 1 when any failed or is
unknown.

With a redis-sentinel:// URL a lost connection instead pauses the enqueue
for up to 1m until the sentinels' master answers (a failover), then it goes
on with the same connection settings: the symbols not yet tried, and those
that certainly did not reach Redis, are enqueued on the new master; with
--id-prefix so are the unknown ones (reported "already enqueued" if the
first call got through). Asynchronous replication means a task the old
master acknowledged just before it died may be missing on the new one; it
is still reported enqueued, as Redis acknowledged it.

--id-prefix P gives each task the ID P:SYMBOL, so a re-run (of F, say)
reports a symbol already in Redis as "already enqueued" on stderr instead
of fetching it twice. The ID stays taken while asynq keeps the task: until
it is processed, then for its retention (24 h by default), so the same
prefix cannot enqueue a symbol again within that time; use a prefix per
run, e.g. the date.

On stderr it also says when delayed tasks (--in, --at) will run, warns when no
running worker serves the queue (the tasks then wait until one does), and,
when stderr is a terminal, shows the progress of a --file enqueue.`,
		Example: `  producer enqueue GOOG msft BRK.B
  producer enqueue --queue critical --unique 1h --json GOOG
  producer enqueue --file examples/watchlist.txt
  producer enqueue --at 2030-01-02T15:04:05Z --queue low GOOG
  cut -d, -f1 watchlist.csv | producer enqueue --file -
  producer enqueue --id-prefix run-2026-12-01 --file big.txt --failed-file left.txt
  producer enqueue --id-prefix run-2026-12-01 --file left.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnqueue(cmd, g, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.queue, "queue", queue.DefaultQueue, "queue to enqueue to")
	fl.DurationVar(&f.in, "in", 0, "process after this delay, e.g. 90s (not with --at)")
	fl.StringVar(&f.at, "at", "", "process at this RFC 3339 time, e.g. 2030-01-02T15:04:05Z; not more than "+clockSkew.String()+" in the past, for clock skew (not with --in)")
	fl.DurationVar(&f.unique, "unique", 0, "skip a symbol whose earlier --unique task in the queue has not completed (nor been deleted), for at most this long (at least 1s; see above)")
	fl.IntVar(&f.maxRetry, "max-retry", 0, "retries before a failing job is archived; 0 archives it at its first failure (a rate limit is no failure) (default from the task: 10)")
	fl.DurationVar(&f.timeout, "timeout", 0, "time limit of one attempt, at least 1s (default from the task: 30s)")
	fl.StringVar(&f.file, "file", "", "read symbols from this file, one a line ('-' is stdin); combined with arguments")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per task")
	fl.StringVar(&f.failedFile, "failed-file", "", "write each failed or unknown symbol to this file, one a line, instead of a stderr line each")
	fl.StringVar(&f.idPrefix, "id-prefix", "", "give each task the ID PREFIX:SYMBOL, so that a re-run reports \"already enqueued\" instead of enqueueing twice")
	return cmd
}

func runEnqueue(cmd *cobra.Command, g *globals, f *enqueueFlags, args []string) error {
	// Check everything before touching Redis.
	opts, runAt, err := f.options(cmd, time.Now())
	if err != nil {
		return err
	}
	if err := checkTracing(); err != nil {
		return err
	}
	raw, err := f.readSymbols(cmd, args)
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		return cli.Usagef("no symbols given: pass them as arguments or with --file")
	}
	errOut := cmd.ErrOrStderr()
	symbols, err := queue.Validate(raw)
	if err != nil {
		return invalidSymbols(errOut, err)
	}
	e, err := g.load(cmd)
	if err != nil {
		return err
	}
	stopTracing, err := startTracing(cmd.Context(), e.log, func(line string) {
		fmt.Fprintf(errOut, "producer: warning: %s\n", line)
	})
	if err != nil {
		return err
	}
	defer stopTracing()
	rc, err := queue.NewRedisClient(e.redis)
	if err != nil {
		return cli.Usage(err)
	}
	defer rc.Close()
	client := asynq.NewClientFromRedisClient(rc) // closes nothing of rc
	defer client.Close()
	var failedOut *os.File
	if f.failedFile != "" {
		// Created before the first call to Redis, so a bad path is found
		// before anything is enqueued. From here on, every symbol not
		// enqueued ends in it, whatever stops the enqueue.
		failedOut, err = os.Create(f.failedFile)
		if err != nil {
			return cli.Usagef("--failed-file: %w", err)
		}
		defer failedOut.Close()
	}

	ctx := cmd.Context()
	start := time.Now()
	var results []queue.Result
	var enqErr error
	if err := client.Ping(); err != nil {
		enqErr = err
		results = queue.NotAttempted(symbols, opts, err)
	} else {
		results, enqErr = f.enqueue(ctx, errOut, e, rc, client, symbols, opts)
	}
	var n [queue.Unknown + 1]int
	for _, r := range results {
		n[r.Outcome]++
	}
	enqueued := n[queue.Enqueued]
	e.log.Debug().Int("enqueued", enqueued).Int("already", n[queue.AlreadyEnqueued]).Int("skipped", n[queue.Skipped]).
		Int("failed", n[queue.Failed]).Int("unknown", n[queue.Unknown]).Int("symbols", len(symbols)).
		Dur("elapsed_ms", time.Since(start)).Msg("enqueue done")

	if err := f.print(cmd.OutOrStdout(), errOut, failedOut, results); err != nil {
		return err
	}
	if enqueued > 0 {
		if !runAt.IsZero() {
			fmt.Fprintf(errOut, "producer: %s\n", runsAt(enqueued, runAt, time.Now()))
		}
		warnUnserved(e, errOut, f.queue)
	}
	if enqErr == nil {
		return nil
	}
	return interrupted(ctx, f.notEnqueued(n[queue.Failed], n[queue.Unknown], len(symbols), enqErr))
}

// enqueue enqueues symbols through client (made over rc), showing the
// progress of a --file enqueue on a terminal.
func (f *enqueueFlags) enqueue(ctx context.Context, errOut io.Writer, e env, rc redis.UniversalClient, client *asynq.Client,
	symbols []string, opts []asynq.Option) ([]queue.Result, error) {
	// Progress only for --file: a few symbols on the command line are
	// done before anyone could read it.
	line := progress.NewLine(errOut, f.file != "" && progress.IsTerminal(errOut))
	counter := progress.NewCounter(line, "enqueue", len(symbols))
	defer counter.Finish()
	cfg := queue.EnqueueConfig{
		Options: opts, IDPrefix: f.idPrefix, Each: func(queue.Result) { counter.Add(1) },
	}
	if queue.FollowsFailover(e.redis) {
		cfg.Reconnect = func(ctx context.Context) error { return awaitMaster(ctx, errOut, rc) }
	}
	return queue.EnqueueAll(ctx, client, symbols, cfg)
}

// failoverWait bounds how long an enqueue through sentinels waits, after a
// lost connection, for them to name a master that answers. Sentinel's own
// default takes 30 s to call a master down (down-after-milliseconds), then
// a few seconds to promote a replica.
const failoverWait = time.Minute

// awaitMaster waits for rc (made from a redis-sentinel:// URL) to reach a
// master again, saying so on errOut.
func awaitMaster(ctx context.Context, errOut io.Writer, rc redis.UniversalClient) error {
	fmt.Fprintf(errOut, "producer: lost the connection to redis; waiting up to %s for the sentinels' master\n", failoverWait)
	start := time.Now()
	if err := queue.WaitReachable(ctx, rc, failoverWait); err != nil {
		fmt.Fprintf(errOut, "producer: %v; giving up on the symbols not yet tried\n", err)
		return err
	}
	fmt.Fprintf(errOut, "producer: redis answers again after %s; enqueueing the rest\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// notEnqueued is the closing error when symbols failed or are unknown
// because of cause.
func (f *enqueueFlags) notEnqueued(failed, unknown, total int, cause error) error {
	where := "each named above"
	if f.failedFile != "" {
		where = "listed in " + f.failedFile
	}
	msg := fmt.Sprintf("%d of %d symbols not enqueued: %d failed (not in redis)", failed+unknown, total, failed)
	if unknown > 0 {
		msg += fmt.Sprintf(", %d unknown (connection lost mid-call: may be in redis)", unknown)
	}
	msg += "; " + where
	switch {
	case unknown > 0 && f.idPrefix != "":
		msg += fmt.Sprintf("; a re-run with --id-prefix %s reports those in redis as already enqueued", f.idPrefix)
	case unknown > 0:
		msg += "; re-running the unknown ones may fetch some twice (use --id-prefix to make re-runs safe)"
	}
	return &notEnqueuedError{msg: msg, cause: cause}
}

// notEnqueuedError is the closing error of an enqueue that left symbols
// out: its text accounts for the symbols, and the per-symbol lines (or
// explain, for an unreachable Redis) say the cause. It matches
// queue.ErrEnqueue and wraps the cause without adding their words.
type notEnqueuedError struct {
	msg   string
	cause error
}

func (e *notEnqueuedError) Error() string   { return e.msg }
func (e *notEnqueuedError) Unwrap() []error { return []error{queue.ErrEnqueue, e.cause} }

// invalidSymbols reports Validate's error: as one line naming each bad
// symbol when there are few, else one line per bad symbol and a closing
// line of bounded length that names the first few, counts them all and
// states the rule.
func invalidSymbols(errOut io.Writer, err error) error {
	var inv *queue.InvalidSymbolsError
	if !errors.As(err, &inv) || len(inv.Symbols) <= maxNamedInError {
		return cli.Usage(err)
	}
	w := bufio.NewWriter(errOut)
	for _, s := range inv.Symbols {
		fmt.Fprintf(w, "producer: invalid symbol %s\n", shortSymbol(s))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write stderr: %w", err)
	}
	names := make([]string, namedInClosingLine)
	for i := range names {
		names[i] = shortSymbol(inv.Symbols[i])
	}
	return cli.Usagef("%d invalid symbols, each named above (%s, ...): %s; nothing enqueued: %w",
		len(inv.Symbols), strings.Join(names, ", "), tasks.SymbolRule, tasks.ErrInvalidSymbol)
}

// shortSymbol shows s quoted, cut to maxSymbolText bytes with its length.
func shortSymbol(s string) string {
	if len(s) <= maxSymbolText {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:maxSymbolText]), len(s))
}

// shortErr is err's text cut to maxErrText bytes.
func shortErr(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > maxErrText {
		msg = msg[:maxErrText] + "..."
	}
	return msg
}

// options turns the flags into asynq options, checking each against now.
// runAt is when delayed tasks (--in, --at) will run; zero if not delayed.
func (f *enqueueFlags) options(cmd *cobra.Command, now time.Time) ([]asynq.Option, time.Time, error) {
	var runAt time.Time
	changed := cmd.Flags().Changed
	if err := checkQueueName(f.queue); err != nil {
		return nil, runAt, err
	}
	if changed("id-prefix") {
		if err := queue.CheckIDPrefix(f.idPrefix); err != nil {
			return nil, runAt, cli.Usagef("--id-prefix: %w", err)
		}
	}
	opts := []asynq.Option{asynq.Queue(f.queue)}
	if changed("in") && changed("at") {
		return nil, runAt, cli.Usagef("--in and --at cannot be used together")
	}
	if changed("in") {
		if f.in <= 0 {
			return nil, runAt, cli.Usagef("--in %s: want a positive duration", f.in)
		}
		opts = append(opts, asynq.ProcessIn(f.in))
		runAt = now.Add(f.in)
	}
	if changed("at") {
		at, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return nil, runAt, cli.Usagef("--at %q: want an RFC 3339 time such as 2030-01-02T15:04:05Z", f.at)
		}
		if now.Sub(at) > clockSkew {
			return nil, runAt, cli.Usagef("--at %s is in the past (now %s): want a future time (up to %s back is taken, for clock skew)",
				f.at, now.Format(time.RFC3339), clockSkew)
		}
		opts = append(opts, asynq.ProcessAt(at))
		runAt = at
	}
	if changed("unique") {
		if f.unique < time.Second {
			return nil, runAt, cli.Usagef("--unique %s: want at least 1s", f.unique)
		}
		opts = append(opts, asynq.Unique(f.unique))
	}
	if changed("max-retry") {
		if f.maxRetry < tasks.MinMaxRetry {
			return nil, runAt, cli.Usagef("--max-retry %d: want %d (no retries) or more", f.maxRetry, tasks.MinMaxRetry)
		}
		opts = append(opts, asynq.MaxRetry(f.maxRetry))
	}
	if changed("timeout") {
		// asynq keeps whole seconds; anything under 1s would mean no timeout.
		if f.timeout < time.Second {
			return nil, runAt, cli.Usagef("--timeout %s: want at least 1s", f.timeout)
		}
		opts = append(opts, asynq.Timeout(f.timeout))
	}
	return opts, runAt, nil
}

// readSymbols returns the arguments followed by the symbols in --file.
func (f *enqueueFlags) readSymbols(cmd *cobra.Command, args []string) ([]string, error) {
	if !cmd.Flags().Changed("file") {
		return args, nil
	}
	r, err := openInput(cmd, "file", f.file)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fromFile, err := queue.ReadSymbols(r)
	if errors.Is(err, queue.ErrLineTooLong) {
		return nil, cli.Usagef("--file %s: %w", f.file, err)
	}
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", f.file, err)
	}
	return append(args[:len(args):len(args)], fromFile...), nil
}

// print writes the enqueued tasks to out in input order, and a line per
// skipped duplicate and already enqueued task to errOut. Each failed and
// unknown symbol gets a line on errOut, or, if failedOut is not nil, is
// written to it, one a line, failed ones first.
func (f *enqueueFlags) print(out, errOut io.Writer, failedOut *os.File, results []queue.Result) error {
	w := bufio.NewWriterSize(out, 64*1024)
	ew := bufio.NewWriter(errOut)
	enc := json.NewEncoder(w)
	var failed, unknown []string
	for _, r := range results {
		switch r.Outcome {
		case queue.Enqueued:
			if f.json {
				// A write error sticks in w, and Flush reports it below.
				_ = enc.Encode(taskLine{ID: r.ID, Symbol: r.Symbol, Queue: r.Queue})
			} else {
				fmt.Fprintf(w, "%s\t%s\t%s\n", r.ID, r.Symbol, r.Queue)
			}
		case queue.AlreadyEnqueued:
			fmt.Fprintf(ew, "producer: already enqueued: %s: task %s exists in queue %s\n", r.Symbol, r.ID, r.Queue)
		case queue.Skipped:
			fmt.Fprintf(ew, "producer: skipped %s: an earlier --unique task for it in queue %s holds the lock (until it completes or is deleted, or the --unique time runs out)\n", r.Symbol, r.Queue)
		case queue.Failed:
			failed = append(failed, r.Symbol)
			if failedOut == nil {
				fmt.Fprintf(ew, "producer: not enqueued: %s: %s\n", r.Symbol, shortErr(r.Err))
			}
		case queue.Unknown:
			unknown = append(unknown, r.Symbol)
			if failedOut == nil {
				fmt.Fprintf(ew, "producer: unknown, may be enqueued: %s: %s\n", r.Symbol, shortErr(r.Err))
			}
		}
	}
	// The failed file first: a re-run needs it even when stdout is gone.
	if failedOut != nil {
		if err := writeFailed(failedOut, failed, unknown); err != nil {
			return fmt.Errorf("--failed-file: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := ew.Flush(); err != nil {
		return fmt.Errorf("write stderr: %w", err)
	}
	return nil
}

// writeFailed writes the failed, then the unknown symbols to file, one a
// line; a comment line (which --file skips) says where the unknown ones
// start.
func writeFailed(file *os.File, failed, unknown []string) error {
	w := bufio.NewWriter(file)
	for _, s := range failed {
		fmt.Fprintln(w, s)
	}
	if len(unknown) > 0 {
		fmt.Fprintln(w, "# unknown: the connection was lost mid-call, so these may be enqueued already")
		for _, s := range unknown {
			fmt.Fprintln(w, s)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return file.Close()
}

// taskLine is one line of `enqueue --json`.
type taskLine struct {
	ID     string `json:"id"`
	Symbol string `json:"symbol"`
	Queue  string `json:"queue"`
}

// runsAt says when n delayed tasks will run: at, in local RFC 3339 time,
// and how long from now.
func runsAt(n int, at, now time.Time) string {
	tasks := "1 task runs"
	if n != 1 {
		tasks = fmt.Sprintf("%d tasks run", n)
	}
	when := "now"
	if d := at.Sub(now).Round(time.Second); d > 0 {
		when = "in " + d.String()
	}
	return fmt.Sprintf("%s at %s (%s)", tasks, at.Local().Format(time.RFC3339), when)
}

// warnUnserved warns on errOut when no running worker serves queue, so the
// tasks just enqueued would wait. It is only a warning: when the workers
// cannot be listed, it says nothing (a debug log line says why).
func warnUnserved(e env, errOut io.Writer, q string) {
	inspector := asynq.NewInspector(e.redis)
	defer inspector.Close()
	servers, err := inspector.Servers()
	if err != nil {
		e.log.Debug().Err(err).Msg("could not list the running workers")
		return
	}
	if w := queue.UnservedWarning(servers, q); w != "" {
		fmt.Fprintf(errOut, "producer: warning: %s\n", w)
	}
}
