package quote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/tasks"
)

// MaxBodyBytes caps how much of an answer's body is read.
const MaxBodyBytes = 1 << 20

// tokenHeader carries the API key, as Finnhub names it.
const tokenHeader = "X-Finnhub-Token"

// Defaults for Config's zero values.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultMaxConns = 100
	// maxRetryAfter bounds a server's Retry-After so a bad header cannot park
	// a job for days.
	maxRetryAfter = time.Hour
)

// Config configures a Client.
type Config struct {
	// BaseURL of the API, e.g. http://127.0.0.1:8000.
	BaseURL string
	// APIKey is sent as X-Finnhub-Token when set. It is never logged.
	APIKey string
	// Timeout bounds one request, body included. Default DefaultTimeout.
	Timeout time.Duration
	// MaxConns sizes the connection pool: set it to the worker's concurrency.
	// Go's default of 2 idle connections per host would make every other
	// request open a new connection.
	MaxConns int
	// Observe, when set, is called once per request with the outcome
	// ("200", "429", "error", ...) and the request's duration.
	Observe func(outcome string, d time.Duration)
}

// Client fetches quotes. It is safe for concurrent use.
type Client struct {
	endpoint *url.URL
	apiKey   string
	// redact hides the key and the URL's password in every error Quote
	// returns: an upstream may echo them in a body, and url.Error quotes
	// the request URL.
	redact  *config.Redactor
	timeout time.Duration
	http    *http.Client
	observe func(string, time.Duration)
}

// New returns a Client with one shared transport sized to cfg.MaxConns.
func New(cfg Config) (*Client, error) {
	if err := config.CheckQuoteAPIURL(cfg.BaseURL); err != nil {
		return nil, err
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("quote api url %q: %w", config.RedactURL(cfg.BaseURL), err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	observe := cfg.Observe
	if observe == nil {
		observe = func(string, time.Duration) {}
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.MaxConns,
		MaxIdleConnsPerHost:   cfg.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &Client{
		endpoint: base.JoinPath("api/v1/quote"),
		apiKey:   cfg.APIKey,
		redact:   config.NewRedactor(cfg.APIKey, cfg.BaseURL),
		timeout:  cfg.Timeout,
		http:     &http.Client{Transport: traced(transport), CheckRedirect: keepKeyOnHost},
		observe:  observe,
	}, nil
}

// traced wraps the transport with OpenTelemetry's net/http instrumentation:
// a client span per request, the child of the caller's span and made by the
// caller's provider. Only under a recording span, though: with tracing off
// or the job not sampled a request costs nothing more, and a request made
// outside a job starts no trace of its own. The span records the method,
// url.full without the URL's user and password, and the status; no header,
// so not the API key (tokenHeader).
func traced(rt http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(rt, otelhttp.WithFilter(func(r *http.Request) bool {
		return trace.SpanFromContext(r.Context()).IsRecording()
	}))
}

// keepKeyOnHost follows redirects as http.Client does by default, but sends
// the API key only to the API's own scheme and host: Go strips Authorization
// and Cookie on a redirect elsewhere, not a custom header like ours.
func keepKeyOnHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		req.Header.Del(tokenHeader)
	}
	return nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Quote fetches the quote of symbol. Errors are tasks.ErrUnknownSymbol,
// tasks.ErrInvalidQuote (wrapping ErrBodyTooLarge when the body is too large),
// *tasks.StatusError, or a transport error (timeouts, resets, refused connections).
func (c *Client) Quote(ctx context.Context, symbol string) (q tasks.Quote, err error) {
	start := time.Now()
	outcome := "error"
	defer func() { c.observe(outcome, time.Since(start)) }()
	// Upstream text enters errors here (bodies, decoded values, the URL of
	// a url.Error), and from errors the job log and the task's stored last
	// error: none of them may show the key or the URL's password.
	defer func() { err = c.redact.Error(err) }()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.endpoint
	u.RawQuery = url.Values{"symbol": {symbol}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return tasks.Quote{}, fmt.Errorf("build quote request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tickerq")
	if c.apiKey != "" {
		req.Header.Set(tokenHeader, c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error carries the URL, whose password the deferred redaction
		// hides; the key is a header, which no transport error quotes.
		return tasks.Quote{}, fmt.Errorf("quote request: %w", err)
	}
	defer drainAndClose(resp.Body)
	outcome = strconv.Itoa(resp.StatusCode)

	body, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return tasks.Quote{}, fmt.Errorf("%w %q: quote api answered 404", tasks.ErrUnknownSymbol, symbol)
	case resp.StatusCode != http.StatusOK:
		return tasks.Quote{}, &tasks.StatusError{
			Code:       resp.StatusCode,
			RetryAfter: parseRetryAfterHeader(resp.Header.Get("Retry-After"), time.Now()),
			Body:       snippet(c.redact.Redact(string(body))),
		}
	case readErr != nil:
		return tasks.Quote{}, fmt.Errorf("read quote body: %w", readErr)
	case len(body) > MaxBodyBytes:
		return tasks.Quote{}, fmt.Errorf("%w: %w: over %d bytes", tasks.ErrInvalidQuote, ErrBodyTooLarge, MaxBodyBytes)
	}
	return parseQuote(symbol, body)
}

// drainAndClose reads what is left of a body (up to a bound) so the
// connection can be reused, then closes it.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, MaxBodyBytes))
	_ = body.Close()
}

// snippet is the start of a body, on one line, for error messages. Redact
// the body first: cut first, a secret could survive in part.
func snippet(body string) string {
	const n = 200
	s := strings.Join(strings.Fields(body), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// ParseRetryAfter parses a Retry-After value, either delay-seconds or an
// HTTP date, relative to now. ok is false when v is empty or malformed. The
// result is clamped to [0, 1h].
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	// A delay beyond uint64 is still all digits: ParseUint then gives
	// ErrRange with the largest value, which the clamp below turns into 1h.
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}

func parseRetryAfterHeader(v string, now time.Time) time.Duration {
	d, _ := ParseRetryAfter(v, now)
	return d
}
