package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/ui"
)

// Timeouts of the UI's HTTP server.
const (
	uiReadHeaderTimeout = 10 * time.Second
	uiIdleTimeout       = 2 * time.Minute
	uiShutdownTimeout   = 10 * time.Second
	uiRedisPingTimeout  = 3 * time.Second
)

type uiFlags struct {
	addr           string
	readOnly       bool
	insecureNoAuth bool
}

func uiCmd(g *globals) *cobra.Command {
	var f uiFlags
	cmd := &cobra.Command{
		Use:   "ui [--addr A] [--read-only]",
		Short: "Serve the asynqmon web UI over the queues",
		Long: `ui serves the asynqmon web UI: queues, tasks in every state, servers and
Redis. A quote-fetch task shows as its symbol, its result as
"173.25 USD @ 14:30:00Z". People can delete, run, archive and cancel tasks and
pause queues unless --read-only is given.

It listens on --addr and serves until SIGINT or SIGTERM, then exits 0.

` + config.EnvHelp(config.UIEnv) + `

UI_USER and UI_PASSWORD (both or neither) require HTTP basic auth. Without
them anyone who can reach the port controls the queues, so on an address
other than loopback (127.0.0.0/8, ::1, localhost) ui refuses to start, exit
2, unless --insecure-no-auth is given (then it only warns): keep the default
loopback address, or set UI_USER and UI_PASSWORD and put the UI behind TLS.`,
		Example: `  producer ui
  UI_USER=ops UI_PASSWORD=... producer ui --addr 0.0.0.0:8080 --read-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUI(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", cli.Env(config.EnvUIAddr, config.DefaultUIAddr), "host:port to listen on; port 0 picks a free one")
	config.FlagFromEnv(fl, "addr", config.EnvUIAddr)
	fl.BoolVar(&f.readOnly, "read-only", false, "look, but do not change tasks or queues")
	config.FlagFromEnv(fl, "read-only", config.EnvUIReadOnly)
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve beyond loopback without UI_USER and UI_PASSWORD: anyone who can reach the port controls the queues")
	return cmd
}

func runUI(cmd *cobra.Command, g *globals, f *uiFlags) error {
	if err := checkListenAddr(f.addr); err != nil {
		return err
	}
	if !cmd.Flags().Changed("read-only") {
		if v := cli.Env(config.EnvUIReadOnly, ""); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return cli.Usagef("%s %q: want true or false", config.EnvUIReadOnly, v)
			}
			f.readOnly = b
		}
	}
	user, password := os.Getenv(config.EnvUIUser), os.Getenv(config.EnvUIPassword)
	if (user == "") != (password == "") {
		return cli.Usagef("%s and %s: set both to require basic auth, or neither", config.EnvUIUser, config.EnvUIPassword)
	}
	if err := checkExposure(f.addr, user != "", f.insecureNoAuth); err != nil {
		return err
	}
	e, err := g.load(cmd)
	if err != nil {
		return err
	}
	handler, err := ui.New(ui.Config{
		Redis: e.redis, User: user, Password: password, ReadOnly: f.readOnly,
		Loopback: ui.IsLoopbackHost(f.addr),
	})
	if err != nil {
		return cli.Usage(err)
	}
	defer handler.Close()

	// Bind before anything else can go wrong, so a taken port fails at once.
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	auth := user != ""
	e.log.Info().Str("addr", addr.String()).Str("url", uiURL(addr)).
		Bool("basic_auth", auth).Bool("read_only", f.readOnly).Msg("web UI listening")
	warnExposure(e.log, addr, auth, f.readOnly)

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: uiReadHeaderTimeout,
		IdleTimeout:       uiIdleTimeout,
		ErrorLog:          stdlog.New(e.log.With().Str("component", "http").Logger(), "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	pingRedis(cmd.Context(), e)

	select {
	case err := <-served:
		return fmt.Errorf("serve web UI: %w", err)
	case <-cmd.Context().Done():
	}
	e.log.Info().Msg("web UI stopping")
	ctx, cancel := context.WithTimeout(context.Background(), uiShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop web UI: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve web UI: %w", err)
	}
	e.log.Info().Msg("web UI stopped")
	return nil
}

// uiURL is where a person on this host opens the UI.
func uiURL(addr *net.TCPAddr) string {
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port)) + "/"
}

// checkListenAddr rejects an address net.Listen would misread: it must be
// host:port with a numeric port; the host may be empty (every interface).
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return cli.Usagef("--addr %q: want host:port, e.g. %s", addr, config.DefaultUIAddr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return cli.Usagef("--addr %q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

// checkExposure refuses to serve without basic auth on an address other
// than loopback, where anyone who can reach the port could change the
// queues, unless insecureNoAuth says that is wanted. An empty host means
// every interface.
func checkExposure(addr string, auth, insecureNoAuth bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cli.Usagef("--addr %q: want host:port, e.g. %s", addr, config.DefaultUIAddr)
	}
	if auth || insecureNoAuth || (host != "" && ui.IsLoopbackHost(host)) {
		return nil
	}
	return cli.Usagef("--addr %s is not loopback and the web UI would have no authentication: set %s and %s, listen on 127.0.0.1, or pass --insecure-no-auth",
		addr, config.EnvUIUser, config.EnvUIPassword)
}

// warnExposure warns loudly when the UI listens beyond loopback without
// basic auth, and when basic auth travels in clear text over a network.
func warnExposure(log zerolog.Logger, addr *net.TCPAddr, auth, readOnly bool) {
	if addr.IP.IsLoopback() {
		return
	}
	if auth {
		log.Warn().Str("addr", addr.String()).
			Msg("web UI listens beyond loopback over plain HTTP: basic-auth passwords cross the network in clear text; put it behind a TLS proxy")
		return
	}
	can := "see, delete, retry, archive and cancel tasks and pause queues"
	if readOnly {
		can = "see every queue, task, payload and error"
	}
	log.Warn().Str("addr", addr.String()).
		Msgf("WARNING: web UI on %s has NO AUTHENTICATION and listens beyond loopback: anyone who can reach port %d can %s. Set UI_USER and UI_PASSWORD to require a password, or listen on 127.0.0.1",
			addr, addr.Port, can)
}

// pingRedis warns when Redis does not answer. The UI still serves: it shows
// Redis's errors, and recovers once Redis is back.
func pingRedis(ctx context.Context, e env) {
	c, ok := e.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return
	}
	defer c.Close()
	pingCtx, cancel := context.WithTimeout(ctx, uiRedisPingTimeout)
	defer cancel()
	if err := c.Ping(pingCtx).Err(); err != nil && ctx.Err() == nil { // not when stopping
		e.log.Warn().Err(err).Msg("Redis does not answer; the web UI will show errors until it does")
	}
}
