package quote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/quote"
	"github.com/tickerq/tickerq/tasks"
)

// apiKey is the secret the failing cases check for in error strings.
const apiKey = "sekret-api-key-7f3a9c"

const okBody = `{"c":173.25,"d":1.2,"dp":0.7,"h":174.1,"l":171.5,"o":172.0,"pc":172.05,"t":1763719200}`

// newServer starts a fake quote API, closed when t ends. Its requests'
// contexts end with the test too, so a hanging handler never holds up Close.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	stop, cancel := context.WithCancel(context.Background())
	ts := httptest.NewUnstartedServer(h)
	ts.Config.BaseContext = func(net.Listener) context.Context { return stop }
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(cancel) // runs first
	return ts
}

// newClient returns a client of baseURL with the API key set, unless cfg
// says otherwise, closed when t ends.
func newClient(t *testing.T, baseURL string, cfg quote.Config) *quote.Client {
	t.Helper()
	cfg.BaseURL = baseURL
	c, err := quote.New(cfg)
	if err != nil {
		t.Fatalf("quote.New(%+v): %v", cfg, err)
	}
	t.Cleanup(c.Close)
	return c
}

// checkNoKey fails t when err's text holds the API key.
func checkNoKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), apiKey) {
		t.Errorf("error text leaks the API key: %q", err)
	}
}

// hang never answers: it blocks until the client goes away or the test
// ends (see newServer).
func hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// resetHandler hijacks the connection and resets it without answering.
func resetHandler(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // close with RST rather than FIN
	}
	_ = conn.Close()
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "127.0.0.1:8000", "ftp://127.0.0.1", "http://", "http//x", "://x"} {
		if _, err := quote.New(quote.Config{BaseURL: raw}); err == nil {
			t.Errorf("quote.New(BaseURL %q) succeeded, want an error", raw)
		}
	}
}

func TestClientRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		base     string // appended to the server's URL
		key      string
		wantPath string
	}{
		{"with key", "", apiKey, "/api/v1/quote"},
		{"without key", "", "", "/api/v1/quote"},
		{"base with trailing slash", "/", apiKey, "/api/v1/quote"},
		{"base with a path", "/finnhub", apiKey, "/finnhub/api/v1/quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reqs := make(chan *http.Request, 1)
			ts := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				reqs <- r.Clone(context.Background())
				_, _ = fmt.Fprint(w, okBody)
			})
			c := newClient(t, ts.URL+tc.base, quote.Config{APIKey: tc.key})
			q, err := c.Quote(context.Background(), "GOOG")
			if err != nil {
				t.Fatalf("Quote: %v", err)
			}
			if q.Symbol != "GOOG" || q.Price != "173.25" {
				t.Errorf("Quote = %+v, want GOOG at 173.25", q)
			}
			r := <-reqs
			if r.Method != http.MethodGet || r.URL.Path != tc.wantPath {
				t.Errorf("request %s %s, want GET %s", r.Method, r.URL.Path, tc.wantPath)
			}
			got := r.Header.Values("X-Finnhub-Token")
			switch {
			case tc.key != "" && (len(got) != 1 || got[0] != tc.key):
				t.Errorf("X-Finnhub-Token = %q, want [%q]", got, tc.key)
			case tc.key == "" && len(got) != 0:
				t.Errorf("X-Finnhub-Token = %q, want no header without a key", got)
			}
			if strings.Contains(r.URL.RawQuery, apiKey) {
				t.Errorf("the API key rides in the query %q; it must only be a header", r.URL.RawQuery)
			}
		})
	}
}

// TestClientRedirect: redirects are followed, but the API key goes only to
// the API's own host.
func TestClientRedirect(t *testing.T) {
	t.Parallel()
	tokens := make(chan string, 2)
	record := func(w http.ResponseWriter, r *http.Request) {
		tokens <- r.Header.Get("X-Finnhub-Token")
		_, _ = fmt.Fprint(w, okBody)
	}
	elsewhere := newServer(t, record)
	api := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch sym := r.URL.Query().Get("symbol"); {
		case sym == "SAME" && r.URL.Path != "/moved":
			http.Redirect(w, r, "/moved?symbol=SAME", http.StatusFound)
		case sym == "OTHER":
			http.Redirect(w, r, elsewhere.URL+"/api/v1/quote?symbol=OTHER", http.StatusTemporaryRedirect)
		default:
			record(w, r)
		}
	})
	c := newClient(t, api.URL, quote.Config{APIKey: apiKey})
	for _, tc := range []struct {
		symbol, wantToken string
	}{
		{"SAME", apiKey},
		{"OTHER", ""},
	} {
		if _, err := c.Quote(context.Background(), tc.symbol); err != nil {
			t.Errorf("Quote(%s) through a redirect: %v", tc.symbol, err)
			continue
		}
		if got := <-tokens; got != tc.wantToken {
			t.Errorf("redirect for %s: the target got token %q, want %q", tc.symbol, got, tc.wantToken)
		}
	}
}

func TestClientEscapesSymbol(t *testing.T) {
	t.Parallel()
	for _, symbol := range []string{"GOOG", "BRK.B", "RDS-A", "A&B=C", "X Y+Z/?#%"} {
		t.Run(symbol, func(t *testing.T) {
			t.Parallel()
			queries := make(chan map[string][]string, 1)
			ts := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				queries <- r.URL.Query()
				_, _ = fmt.Fprint(w, okBody)
			})
			c := newClient(t, ts.URL, quote.Config{})
			if _, err := c.Quote(context.Background(), symbol); err != nil {
				t.Fatalf("Quote(%q): %v", symbol, err)
			}
			got := <-queries
			if len(got) != 1 || len(got["symbol"]) != 1 || got["symbol"][0] != symbol {
				t.Errorf("server saw query %q, want exactly symbol=[%q]", got, symbol)
			}
		})
	}
}

func TestClientAnswers(t *testing.T) {
	t.Parallel()
	tooLarge := `{"c":173.25,"t":1763719200,"pad":"` + strings.Repeat("x", quote.MaxBodyBytes) + `"}`
	// A valid quote padded with spaces to exactly MaxBodyBytes.
	exactly := okBody + strings.Repeat(" ", quote.MaxBodyBytes-len(okBody))
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		wantErr []error // every one must match with errors.Is; nil: success
		// For *tasks.StatusError answers:
		wantCode             int
		minRetry, maxRetry   time.Duration
		wantBodyInErrMessage string
	}{
		{name: "200", status: 200, body: okBody},
		{name: "200 of exactly MaxBodyBytes", status: 200, body: exactly},
		{name: "200 unknown symbol", status: 200, body: `{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`,
			wantErr: []error{tasks.ErrUnknownSymbol}},
		{name: "200 invalid quote", status: 200, body: `{"c":NaN,"t":1763719200}`,
			wantErr: []error{tasks.ErrInvalidQuote}},
		{name: "200 empty body", status: 200, body: "", wantErr: []error{tasks.ErrInvalidQuote}},
		{name: "200 over MaxBodyBytes", status: 200, body: tooLarge,
			wantErr: []error{tasks.ErrInvalidQuote, quote.ErrBodyTooLarge}},
		{name: "404", status: 404, body: `{"error":"no such symbol"}`, wantErr: []error{tasks.ErrUnknownSymbol}},
		{name: "429 Retry-After seconds", status: 429, header: map[string]string{"Retry-After": "7"},
			body: "slow down", wantCode: 429, minRetry: 7 * time.Second, maxRetry: 7 * time.Second,
			wantBodyInErrMessage: "slow down"},
		{name: "429 Retry-After date", status: 429,
			header:   map[string]string{"Retry-After": time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)},
			wantCode: 429, minRetry: 25 * time.Second, maxRetry: 30 * time.Second},
		{name: "429 without Retry-After", status: 429, wantCode: 429},
		{name: "429 malformed Retry-After", status: 429, header: map[string]string{"Retry-After": "soon"}, wantCode: 429},
		{name: "500", status: 500, body: "internal\nerror", wantCode: 500, wantBodyInErrMessage: "internal error"},
		{name: "500 with a huge body", status: 500, body: strings.Repeat("e", 3*quote.MaxBodyBytes), wantCode: 500},
		{name: "503 Retry-After", status: 503, header: map[string]string{"Retry-After": "5"},
			wantCode: 503, minRetry: 5 * time.Second, maxRetry: 5 * time.Second},
		{name: "400", status: 400, body: `{"error":"bad symbol"}`, wantCode: 400, wantBodyInErrMessage: "bad symbol"},
		{name: "401", status: 401, wantCode: 401},
		{name: "403", status: 403, wantCode: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = fmt.Fprint(w, tc.body)
			})
			c := newClient(t, ts.URL, quote.Config{APIKey: apiKey})
			q, err := c.Quote(context.Background(), "GOOG")
			checkNoKey(t, err)
			if tc.wantErr == nil && tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Quote: %v", err)
				}
				if q.Price != "173.25" || q.QuotedAt.Unix() != 1763719200 {
					t.Errorf("Quote = %+v", q)
				}
				return
			}
			if err == nil {
				t.Fatalf("Quote = %+v, want an error", q)
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Quote error %q does not wrap %v", err, want)
				}
			}
			var se *tasks.StatusError
			isStatus := errors.As(err, &se)
			if tc.wantCode == 0 {
				if isStatus {
					t.Errorf("Quote error %q is a *tasks.StatusError, want none", err)
				}
				return
			}
			if !isStatus {
				t.Fatalf("Quote error %q (%T) is not a *tasks.StatusError", err, err)
			}
			if se.Code != tc.wantCode {
				t.Errorf("tasks.StatusError.Code = %d, want %d", se.Code, tc.wantCode)
			}
			if se.RetryAfter < tc.minRetry || se.RetryAfter > tc.maxRetry {
				t.Errorf("tasks.StatusError.RetryAfter = %v, want %v..%v", se.RetryAfter, tc.minRetry, tc.maxRetry)
			}
			if errors.Is(err, tasks.ErrUnknownSymbol) || errors.Is(err, tasks.ErrInvalidQuote) {
				t.Errorf("tasks.StatusError %q also matches a quote sentinel", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprint(tc.wantCode)) || !strings.Contains(msg, tc.wantBodyInErrMessage) {
				t.Errorf("error text %q, want the code %d and %q", msg, tc.wantCode, tc.wantBodyInErrMessage)
			}
			if len(msg) > 400 {
				t.Errorf("error text is %d bytes long; the body must be cut short", len(msg))
			}
		})
	}
}

// isTimeout reports whether err is a deadline or a net timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"no headers", hang},
		{"headers then a stalled body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = fmt.Fprint(w, `{"c":173.25,`)
			_ = http.NewResponseController(w).Flush()
			hang(w, r)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newServer(t, tc.handler)
			c := newClient(t, ts.URL, quote.Config{APIKey: apiKey, Timeout: timeout})
			start := time.Now()
			q, err := c.Quote(context.Background(), "GOOG")
			elapsed := time.Since(start)
			if err == nil {
				t.Fatalf("Quote = %+v, want a timeout", q)
			}
			checkNoKey(t, err)
			if !isTimeout(err) {
				t.Errorf("Quote error %q is not a timeout", err)
			}
			if errors.Is(err, tasks.ErrInvalidQuote) {
				t.Errorf("a timeout is reported as an invalid quote: %q", err)
			}
			// A sanity bound only: the point is that it does not hang.
			if elapsed > 5*time.Second {
				t.Errorf("Quote took %v with Timeout %v", elapsed, timeout)
			}
		})
	}
}

func TestClientHonorsCallerContext(t *testing.T) {
	t.Parallel()
	ts := newServer(t, hang)
	c := newClient(t, ts.URL, quote.Config{APIKey: apiKey}) // default 10 s timeout
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Quote(ctx, "GOOG")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Quote error %v, want context.DeadlineExceeded", err)
	}
	checkNoKey(t, err)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Quote took %v past its context's deadline", elapsed)
	}
}

func TestClientResetConnection(t *testing.T) {
	t.Parallel()
	ts := newServer(t, resetHandler)
	c := newClient(t, ts.URL, quote.Config{APIKey: apiKey, Timeout: 5 * time.Second})
	q, err := c.Quote(context.Background(), "GOOG")
	if err == nil {
		t.Fatalf("Quote = %+v, want a transport error", q)
	}
	checkNoKey(t, err)
	var se *tasks.StatusError
	if errors.As(err, &se) || errors.Is(err, tasks.ErrInvalidQuote) || errors.Is(err, tasks.ErrUnknownSymbol) {
		t.Errorf("reset connection gave %q, want a transport error", err)
	}
	if isTimeout(err) {
		t.Errorf("reset connection gave a timeout %q; it should fail at once", err)
	}
}

func TestClientRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	c := newClient(t, "http://"+addr, quote.Config{APIKey: apiKey})
	_, err = c.Quote(context.Background(), "GOOG")
	if err == nil {
		t.Fatal("Quote to a closed port succeeded")
	}
	checkNoKey(t, err)
	var se *tasks.StatusError
	if errors.As(err, &se) {
		t.Errorf("refused connection gave a tasks.StatusError %q", err)
	}
}

func TestClientObserve(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	observe := func(outcome string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if d < 0 {
			outcome += " (negative duration)"
		}
		got = append(got, outcome)
	}
	for _, tc := range []struct {
		handler http.HandlerFunc
		want    string
	}{
		{func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, okBody) }, "200"},
		{func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, `{"c":0,"t":0}`) }, "200"},
		{func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, `{"c":-1}`) }, "200"},
		{func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, "404"},
		{func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(429) }, "429"},
		{func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, "503"},
		{resetHandler, "error"},
		{hang, "error"},
	} {
		mu.Lock()
		got = got[:0]
		mu.Unlock()
		ts := newServer(t, tc.handler)
		c := newClient(t, ts.URL, quote.Config{Timeout: 200 * time.Millisecond, Observe: observe})
		_, _ = c.Quote(context.Background(), "GOOG")
		mu.Lock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("Observe calls for a %s answer: %q, want exactly [%q]", tc.want, got, tc.want)
		}
		mu.Unlock()
	}
}

// TestClientReusesConnections shows that the shared transport is sized to
// MaxConns: with at most MaxConns requests in flight, no connection is ever
// closed and reopened. (Go's default transport keeps only 2 idle connections
// per host, so under this load it would open a new connection for most
// requests.)
func TestClientReusesConnections(t *testing.T) {
	t.Parallel()
	const (
		maxConns   = 50
		sequential = 50
		perWorker  = 3 // concurrent requests: maxConns * perWorker
	)
	var newConns, requests atomic.Int64
	allIn := make(chan struct{})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first concurrent wave waits until all of its requests are in
		// flight, so the client must really hold maxConns connections.
		if n := requests.Add(1); n > sequential && n <= sequential+maxConns {
			if n == sequential+maxConns {
				close(allIn)
			}
			select {
			case <-allIn:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = fmt.Fprint(w, okBody)
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	c := newClient(t, ts.URL, quote.Config{MaxConns: maxConns, Timeout: 10 * time.Second})

	for i := range sequential {
		if _, err := c.Quote(context.Background(), "GOOG"); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	if n := newConns.Load(); n != 1 {
		t.Errorf("%d sequential requests opened %d connections, want 1", sequential, n)
	}

	var wg sync.WaitGroup
	errs := make(chan error, maxConns*perWorker)
	for range maxConns {
		wg.Go(func() {
			for range perWorker {
				if _, err := c.Quote(context.Background(), "GOOG"); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent request: %v", err)
	}
	if got, want := requests.Load(), int64(sequential+maxConns*perWorker); got != want {
		t.Errorf("server saw %d requests, want %d", got, want)
	}
	n := newConns.Load()
	t.Logf("%d requests over %d connections", requests.Load(), n)
	if n > maxConns {
		t.Errorf("%d requests with at most %d in flight opened %d connections, want at most %d",
			requests.Load(), maxConns, n, maxConns)
	}
}
