// Command bench measures tickerq on this machine against asynq's own
// ceilings, all in one run with one local quote API and the same Redis and
// PostgreSQL: throughput of asynq with a no-op handler, of asynq with a
// handler that only does the quote GET, of tickerq end to end and of
// tickerq with one transaction per job, in alternating rounds; overlap
// efficiency of jobs that wait on the quote API; the producer's enqueue
// rate; enqueue→commit latency under an open-loop load; the worker's RSS
// at concurrency 1 000; and three workers against a stock Postgres.
//
// It writes results.json, results.md and throughput.png into --out. Run it
// with `make bench`; docs/performance.md explains the method.
//
// The bench creates a database of its own on DATABASE_URL's server (as
// that URL's user, which must be allowed to create databases and roles)
// and drops it at the end; in Redis it uses queues named bench-* and
// deletes their keys when done.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, rootCmd(), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func rootCmd() *cobra.Command {
	var opts options
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure tickerq against asynq's ceilings on this machine",
		Long: `bench runs every measurement of docs/performance.md in one go and writes
results.json, results.md and throughput.png into --out.

Environment: REDIS_URL, DATABASE_URL (the bench creates and drops a
database of its own on that server).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.check(); err != nil {
				return cli.Usage(err)
			}
			return run(cmd.Context(), opts)
		},
	}
	opts.bind(cmd.Flags())
	cmd.AddCommand(serveCmd())
	return cmd
}
