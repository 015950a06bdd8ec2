package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/internal/calendar"
	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/schedule"
)

// Timeouts of `producer schedule`.
const (
	schedulePingTimeout     = 5 * time.Second
	scheduleMetricsShutdown = 5 * time.Second
)

type scheduleFlags struct {
	config      string
	dryRun      bool
	from        string
	count       int
	json        bool
	metricsAddr string
}

func scheduleCmd(g *globals) *cobra.Command {
	var f scheduleFlags
	cmd := &cobra.Command{
		Use:   "schedule --config FILE [--dry-run [--from RFC3339] [--count N] [--json]]",
		Short: "Enqueue the entries of a schedule file at their slots",
		Long: `schedule runs until SIGINT or SIGTERM and, at each slot of each entry of the
YAML file --config, enqueues one quote-fetch task per symbol, with the id
sched:NAME:SYMBOL:UNIX. Any number of replicas may run on the same file and
Redis: each (entry, symbol, slot) is enqueued exactly once. A task still
waiting when its entry's next slot comes is dropped by the worker.

A slot fires only if its firing begins within misfire_grace of its time
(per entry, or at the file's top level for all; default 1m, at least 1s,
never more than the slot's interval). So a start fires each entry's latest
slot only if it is that recent: started at 14:37, a daily 17:00 entry waits
for today's 17:00. A slot no replica began in time (all were down, or
started late) is logged, counted as skipped and never backfilled; once
begun, a firing retries as below whatever its grace.

On a daylight-saving change, a cron with a fixed hour fires a repeated
wall-clock time once (at its first occurrence) and a time inside the
skipped hour at the first instant after it (30 2 * * * at 03:00 EDT); a
cron of every hour fires at each real instant; every: ignores the change.

Completed tasks keep their result for the entry's retention (default 5m).
The file is reloaded on SIGHUP and when it or a symbols file changes; an
invalid file on reload is logged and the running schedule kept. Each firing
logs one line with the counts enqueued, already_enqueued, skipped and errors.
Each entry fires on its own; enqueues that fail are retried with backoff
while the slot is current (until its successor is due, at most 30s), then
counted as errors. An entry with market: that never fires inside a session
within a year is refused at load.

With --dry-run it enqueues nothing and needs no Redis: it prints the next
--count firings at or after --from, one per line RFC3339<TAB>NAME<TAB>N
(N symbols), or with --json {"at":...,"schedule":...,"symbols":[...]}.
On stderr it adds one line for each entry whose latest slot before --from
a start at --from would fire too, being within its misfire_grace:
  producer: a start at ... would also fire NAME's slot ... (30s late; misfire_grace 1m0s)
(unless another replica already fired that slot: then the start finds its
tasks there and logs them as already_enqueued).`,
		Example: `  producer schedule --config examples/schedule.yaml
  producer schedule --config examples/schedule.yaml --dry-run --from 2027-01-15T09:00:00-05:00 --count 20
  producer schedule --config examples/schedule.yaml --metrics-addr 127.0.0.1:9091`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSchedule(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "the schedule file (YAML)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the next firings instead of enqueueing")
	fl.StringVar(&f.from, "from", "", "with --dry-run: start at this RFC 3339 time (default now)")
	fl.IntVar(&f.count, "count", 10, "with --dry-run: how many firings to print")
	fl.BoolVar(&f.json, "json", false, "with --dry-run: print one JSON object per firing")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this host:port (default off)")
	return cmd
}

func runSchedule(cmd *cobra.Command, g *globals, f *scheduleFlags) error {
	changed := cmd.Flags().Changed
	if f.config == "" {
		return cli.Usagef("--config: want the schedule file")
	}
	if !f.dryRun {
		for _, name := range []string{"from", "count", "json"} {
			if changed(name) {
				return cli.Usagef("--%s: only with --dry-run", name)
			}
		}
	}
	if f.dryRun && changed("metrics-addr") {
		return cli.Usagef("--metrics-addr: not with --dry-run")
	}
	if f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			return cli.Usagef("--metrics-addr %q: want host:port", f.metricsAddr)
		}
	}
	cfg, err := schedule.Load(f.config, lookupMarket)
	if err != nil {
		return cli.Usage(err)
	}
	if f.dryRun {
		return dryRun(cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, f, changed("from"))
	}
	if err := checkTracing(); err != nil {
		return err
	}

	e, err := g.load(cmd)
	if err != nil {
		return err
	}
	stopTracing, err := startTracing(cmd.Context(), e.log, nil)
	if err != nil {
		return err
	}
	defer stopTracing()
	// Ask for SIGHUP before anything slow: its default would kill us.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	rdb, ok := e.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("redis: unexpected client type")
	}
	defer rdb.Close()
	ctx := cmd.Context()
	pingCtx, cancel := context.WithTimeout(ctx, schedulePingTimeout)
	err = rdb.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		return interrupted(ctx, fmt.Errorf("connect to redis: %w", err))
	}
	client := asynq.NewClientFromRedisClient(rdb)

	runner := &schedule.Runner{Client: client, Redis: rdb, Log: e.log, Clock: schedule.SystemClock{}}
	var metrics *schedule.Metrics
	if f.metricsAddr != "" {
		metrics = schedule.NewMetrics()
		runner.Observer = metrics
	}
	e.log.Info().Str("config", cfg.Path).Int("schedules", len(cfg.Entries)).Msg("schedule started")

	g2, gctx := errgroup.WithContext(ctx)
	if metrics != nil {
		ln, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", f.metricsAddr, err)
		}
		e.log.Info().Str("addr", ln.Addr().String()).Msg("metrics server listening")
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		srv := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          stdlog.New(e.log.With().Str("component", "http").Logger(), "", 0),
		}
		g2.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve metrics: %w", err)
			}
			return nil
		})
		g2.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), scheduleMetricsShutdown)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	reloads := make(chan *schedule.Config)
	rl := &schedule.Reloader{Path: f.config, Markets: lookupMarket, Log: e.log}
	g2.Go(func() error { return rl.Run(gctx, cfg, hup, reloads) })
	g2.Go(func() error {
		err := runner.Run(gctx, cfg, reloads)
		if err == nil && ctx.Err() == nil {
			err = errors.New("schedule runner stopped")
		}
		return err
	})
	err = g2.Wait()
	e.log.Info().Msg("schedule stopped")
	if ctx.Err() != nil {
		return nil // SIGINT or SIGTERM: a clean stop
	}
	return err
}

// dryRun prints the next firings on out and, on errOut, the slots before
// --from that a start then would fire too (schedule.CatchUp).
func dryRun(out, errOut io.Writer, cfg *schedule.Config, f *scheduleFlags, fromSet bool) error {
	from := time.Now()
	if fromSet {
		t, err := time.Parse(time.RFC3339, f.from)
		if err != nil {
			return cli.Usagef("--from %q: want an RFC 3339 time such as 2027-01-15T09:00:00-05:00", f.from)
		}
		from = t
	}
	if f.count < 1 {
		return cli.Usagef("--count %d: want at least 1", f.count)
	}
	plan, err := schedule.Plan(cfg, from, f.count)
	var catchUp []schedule.Firing
	if err == nil {
		catchUp, err = schedule.CatchUp(cfg, from)
	}
	if err != nil {
		if errors.Is(err, calendar.ErrOutOfRange) || errors.Is(err, schedule.ErrNoSlot) {
			return cli.Usage(err)
		}
		return err
	}
	for _, c := range catchUp {
		fmt.Fprintf(errOut, "producer: %s\n", catchUpLine(from, c))
	}
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	for _, p := range plan {
		at := p.At.Format(time.RFC3339)
		if f.json {
			if err := enc.Encode(firingLine{At: at, Schedule: p.Entry.Name, Symbols: p.Entry.Symbols}); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%d\n", at, p.Entry.Name, len(p.Entry.Symbols))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// catchUpLine tells that a start at `at` would fire c, a slot before it,
// and how late: whole seconds from one second on.
func catchUpLine(at time.Time, c schedule.Firing) string {
	late := at.Sub(c.At).Truncate(time.Millisecond)
	if late >= time.Second {
		late = late.Truncate(time.Second)
	}
	return fmt.Sprintf("a start at %s would also fire %s's slot %s (%s late; misfire_grace %s)",
		at.Format(time.RFC3339), c.Entry.Name, c.At.Format(time.RFC3339), late, c.Entry.Grace(c.At))
}

// firingLine is one line of `schedule --dry-run --json`.
type firingLine struct {
	At       string   `json:"at"`
	Schedule string   `json:"schedule"`
	Symbols  []string `json:"symbols"`
}

// lookupMarket gives the schedule the exchange calendars of internal/calendar.
func lookupMarket(code string) (schedule.Market, error) {
	x, err := calendar.Lookup(code)
	if err != nil {
		return nil, err
	}
	return exchangeMarket{x}, nil
}

// exchangeMarket adapts a calendar.Exchange to schedule.Market.
type exchangeMarket struct{ x *calendar.Exchange }

func (m exchangeMarket) Session(t time.Time) (open, closing time.Time, err error) {
	s, err := m.x.NextSession(t)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return s.Open, s.Close, nil
}
