// Package admin serves the worker's operational endpoints: /healthz,
// /readyz and /metrics.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Check is one readiness check, such as a ping of Redis or Postgres.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// checkTimeout bounds each readiness check.
const checkTimeout = 2 * time.Second

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log zerolog.Logger
	// done is closed when Serve returns.
	done chan struct{}
}

// Handler returns the admin routes: /healthz answers 200 while the process
// runs; /readyz 200 only while every check passes (503 naming the failing
// ones otherwise); /metrics is served by metrics.
func Handler(checks []Check, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var failed []error
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
			if err := c.Fn(ctx); err != nil {
				failed = append(failed, fmt.Errorf("%s: %w", c.Name, err))
			}
			cancel()
		}
		if len(failed) > 0 {
			http.Error(w, errors.Join(failed...).Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}

// Starter is the admin handler of a process that is still connecting to
// the services it needs: /healthz answers 200, /readyz 503 with the state
// ("starting: waiting for postgres (attempt 3)") and every other path 503,
// until Ready hands over to the full handler.
type Starter struct {
	mu    sync.RWMutex
	state string
	h     http.Handler
}

// NewStarter returns a Starter in the state "starting".
func NewStarter() *Starter { return &Starter{state: "starting"} }

// SetState sets what /readyz says until Ready, after "starting: ".
func (s *Starter) SetState(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = "starting: " + state
}

// Ready makes h answer every request from now on.
func (s *Starter) Ready(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = h
}

// ServeHTTP serves the start-up answers, or the handler given to Ready.
func (s *Starter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	h, state := s.h, s.state
	s.mu.RUnlock()
	switch {
	case h != nil:
		h.ServeHTTP(w, r)
	case r.URL.Path == "/healthz":
		fmt.Fprintln(w, "ok")
	default:
		http.Error(w, state, http.StatusServiceUnavailable)
	}
}

// WithProfiling adds Go's profiler under /debug/pprof/ to h, for `go tool
// pprof http://ADMIN_ADDR/debug/pprof/profile`. Off unless asked for: a
// CPU profile costs the process while it runs.
func WithProfiling(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Start binds addr, so a bad address fails at start-up, and serves h in a
// goroutine owned by the returned Server until Shutdown.
func Start(addr string, h http.Handler, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin server: %w", err)
	}
	s := &Server{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		log:  log,
		done: make(chan struct{}),
	}
	go s.serve()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) serve() {
	defer close(s.done)
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error().Err(err).Msg("admin server stopped")
	}
}

// Shutdown stops the server, waiting for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
