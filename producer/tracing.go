package main

import (
	"context"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/tracing"
)

// traceFlushTimeout bounds the flush of the spans still buffered when a
// subcommand that enqueues returns.
const traceFlushTimeout = 5 * time.Second

// checkTracing validates the OTEL_* settings with the other settings, so
// that a typo is a usage error before anything is enqueued.
func checkTracing() error {
	if err := tracing.Check(os.Getenv); err != nil {
		return cli.Usage(err)
	}
	return nil
}

// startTracing switches tracing on if the environment asks for it and
// returns what flushes and stops it; defer it at once, since a
// short-lived command that exits without it loses its spans.
func startTracing(ctx context.Context, log zerolog.Logger) (stop func(), err error) {
	shutdown, err := tracing.Setup(ctx, os.Getenv, "tickerq-producer", log)
	if err != nil {
		return func() {}, cli.Usage(err)
	}
	return func() {
		// Not ctx: after SIGTERM the spans of the run are still worth sending.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), traceFlushTimeout)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn().Err(err).Msg("tracing: could not flush the last spans")
		}
	}, nil
}
