package main

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/quote"
	"github.com/tickerq/tickerq/tasks"
)

// Baseline handlers, served by `bench serve` in a process of their own so
// that they are measured as the worker is.
const (
	modeNoop = "noop" // returns at once
	modeGet  = "get"  // the quote GET and nothing else
)

// serveCmd is the hidden subcommand the bench starts for the asynq
// baselines: an asynq server with the worker's settings and a baseline
// handler.
func serveCmd() *cobra.Command {
	var (
		mode, queue, quoteURL string
		concurrency           int
	)
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Run an asynq server with a baseline handler (used by bench itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var h asynq.Handler
			switch mode {
			case modeNoop:
				h = asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
			case modeGet:
				quotes, err := quote.New(quote.Config{BaseURL: quoteURL, Timeout: config.DefaultQuoteTimeout, MaxConns: concurrency})
				if err != nil {
					return cli.Usage(err)
				}
				defer quotes.Close()
				h = asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
					p, err := tasks.ParseQuoteFetchPayload(t.Payload())
					if err != nil {
						return err
					}
					_, err = quotes.Quote(ctx, p.Symbol)
					return err
				})
			default:
				return cli.Usagef("--mode %q: want %s or %s", mode, modeNoop, modeGet)
			}
			redisOpt, err := config.ParseRedisURL(config.EnvRedisURL, cli.Env(config.EnvRedisURL, config.DefaultRedisURL))
			if err != nil {
				return cli.Usage(err)
			}
			cfg := config.AsynqServer(concurrency, map[string]int{queue: 1}, config.DefaultShutdownTimeout)
			cfg.LogLevel = asynq.WarnLevel
			srv := asynq.NewServer(redisOpt, cfg)
			mux := asynq.NewServeMux()
			mux.Handle(tasks.TypeQuoteFetch, h)
			if err := srv.Start(mux); err != nil {
				return fmt.Errorf("start asynq server: %w", err)
			}
			<-cmd.Context().Done()
			srv.Shutdown()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", modeNoop, "noop or get")
	f.StringVar(&queue, "queue", "", "the one queue to serve")
	f.StringVar(&quoteURL, "quote-url", config.DefaultQuoteAPIURL, "quote API base URL (mode get)")
	f.IntVar(&concurrency, "concurrency", config.DefaultConcurrency, "jobs in flight")
	return cmd
}
