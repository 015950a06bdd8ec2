// Command quoteserver serves a local, Finnhub-compatible quote API for
// development, demos and tests: GET /api/v1/quote?symbol=SYM.
//
// Exit codes: 0 after a clean stop on SIGINT or SIGTERM, 1 on a runtime
// failure (for example the address is taken), 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	tqconfig "github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/quotesim"
)

const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is everything the flags and environment decide.
type config struct {
	addr      string
	latency   time.Duration
	errorRate float64
	rps       float64
	unknown   string
	apiKey    string
	seed      uint64
	script    string
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config
	cmd := &cobra.Command{
		Use:   "quoteserver",
		Short: "Serve a local Finnhub-compatible quote API",
		Long: `quoteserver serves GET /api/v1/quote?symbol=SYM with deterministic prices
per symbol, plus knobs for tests and demos. A request may add ?delay=3s
(or ?delay=3, seconds) to be answered late. GET /stats answers the request
counters as JSON: by status, per tenth of a second, and the busiest second.

` + tqconfig.EnvHelp(tqconfig.QuoteserverEnv),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.Usage(fmt.Errorf("unexpected argument %q", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("api-key") {
				cfg.apiKey = os.Getenv(tqconfig.EnvQuoteAPIKey)
			}
			return serve(cmd.Context(), cfg, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.addr, "addr", "127.0.0.1:8000", "listen address (port 0 picks a free port)")
	f.DurationVar(&cfg.latency, "latency", 0, "fixed latency added to every request")
	f.Float64Var(&cfg.errorRate, "error-rate", 0, "fraction of requests answered 500, from 0 to 1")
	f.Float64Var(&cfg.rps, "rps", 0, "requests per second before answering 429 (default 0: unlimited)")
	f.StringVar(&cfg.unknown, "unknown", quotesim.DefaultUnknown, "comma-separated symbols answered as unknown (c=0, t=0)")
	f.StringVar(&cfg.apiKey, "api-key", "", "required X-Finnhub-Token value; empty = no auth")
	tqconfig.FlagFromEnv(f, "api-key", tqconfig.EnvQuoteAPIKey)
	f.Uint64Var(&cfg.seed, "seed", 0, "seed of the random source behind --error-rate")
	f.StringVar(&cfg.script, "script", "", "answers for the first requests, STATUS[:RETRY_AFTER_SECONDS][*COUNT],...: e.g. 500,429:1 or 200*100,429:5")
	cmd.SetOut(stdout)
	return cli.Execute(ctx, cmd, args, stderr)
}

// serve wires logger, handler, listener and server, then runs until ctx ends.
func serve(ctx context.Context, cfg config, stderr io.Writer) error {
	logger, err := tqconfig.Logger(stderr)
	if err != nil {
		return cli.Usage(err)
	}
	if cfg.latency < 0 {
		return cli.Usage(fmt.Errorf("--latency %s: must not be negative", cfg.latency))
	}
	if !(cfg.errorRate >= 0 && cfg.errorRate <= 1) {
		return cli.Usage(fmt.Errorf("--error-rate %v: want a number from 0 to 1", cfg.errorRate))
	}
	if !(cfg.rps >= 0) || math.IsInf(cfg.rps, 0) {
		return cli.Usage(fmt.Errorf("--rps %v: want a finite number >= 0", cfg.rps))
	}
	var unknown []string
	for _, s := range strings.Split(cfg.unknown, ",") {
		if s = strings.TrimSpace(s); s != "" {
			unknown = append(unknown, s)
		}
	}

	script, err := quotesim.ParseScript(cfg.script)
	if err != nil {
		return cli.Usage(fmt.Errorf("--script: %w", err))
	}
	sim, err := quotesim.New(quotesim.Options{
		Latency:   cfg.latency,
		ErrorRate: cfg.errorRate,
		Seed:      cfg.seed,
		RPS:       cfg.rps,
		Unknown:   unknown,
		APIKey:    cfg.apiKey,
		Script:    script,
		Logger:    logger,
	})
	if err != nil {
		return cli.Usage(err)
	}
	handler := http.NewServeMux()
	handler.Handle(quotesim.Path, sim)
	handler.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		st := sim.Stats()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			quotesim.Stats
			BusiestSecond uint64
		}{st, st.BusiestSecond()})
	})
	handler.Handle("/", sim) // its 404s and 405s

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(logger.With().Str("component", "http").Logger(), "", 0),
	}
	logger.Info().
		Str("addr", ln.Addr().String()).
		Dur("latency_ms", cfg.latency).
		Float64("error_rate", cfg.errorRate).
		Float64("rps", cfg.rps).
		Strs("unknown", unknown).
		Bool("api_key", cfg.apiKey != "").
		Uint64("seed", cfg.seed).
		Int("script_steps", len(script)).
		Msg("quoteserver listening")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info().Msg("quoteserver stopping")
	shCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		// In-flight requests outlived the timeout (a long ?delay=); cut them.
		logger.Warn().Err(err).Dur("timeout_ms", shutdownTimeout).Msg("graceful shutdown timed out; closing connections")
		_ = srv.Close()
	}
	logger.Info().Msg("quoteserver stopped")
	return nil
}
