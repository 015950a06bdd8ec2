package main

import (
	"context"
	"os"

	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/tracing"
)

// checkTracing validates the OTEL_* settings with the other settings, so
// that a typo is a usage error before anything is enqueued.
func checkTracing() error {
	if err := tracing.Check(os.Getenv); err != nil {
		return cli.Usage(err)
	}
	return nil
}

// startTracing switches tracing on if the environment asks for it and
// returns what flushes and stops it (tracing.Start); defer it at once.
func startTracing(ctx context.Context, log zerolog.Logger) (stop func(), err error) {
	stop, err = tracing.Start(ctx, os.Getenv, "tickerq-producer", log)
	if err != nil {
		return stop, cli.Usage(err)
	}
	return stop, nil
}
