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
// Spans that could not be exported are logged through log while the
// command runs, or, with atExit set (a short command), said in one line
// when it stops.
func startTracing(ctx context.Context, log zerolog.Logger, atExit func(line string)) (stop func(), err error) {
	stop, err = tracing.Start(ctx, os.Getenv, tracing.Options{Service: "tickerq-producer", Log: log, AtExit: atExit})
	if err != nil {
		return stop, cli.Usage(err)
	}
	return stop, nil
}
