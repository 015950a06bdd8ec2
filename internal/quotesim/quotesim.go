// Package quotesim is a local, Finnhub-compatible quote API for development,
// demos and tests.
//
// A [Server] answers GET /api/v1/quote?symbol=SYM with a deterministic quote
// per symbol (see [QuoteFor]) and offers knobs that exercise a client's
// failure handling: a fixed latency, a per-request ?delay=, an error rate
// answered 500, a requests-per-second limit answered 429 with Retry-After,
// symbols answered with Finnhub's unknown-symbol quote, and an API key.
//
// A script, when set, answers the first requests with given statuses, in
// arrival order (for instance a 500, then a 429 with Retry-After: 1).
//
// Each request goes through these checks in order: path and method (404,
// 405), API key (401), script, rate limit (429), symbol and delay parameters
// (400), latency and delay, error rate (500), then the answer (200).
package quotesim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Path is the only path the server answers.
const Path = "/api/v1/quote"

// TokenHeader is the header that carries the API key, as Finnhub names it.
const TokenHeader = "X-Finnhub-Token"

// DefaultUnknown is the comma-separated list of symbols that quoteserver
// answers as unknown unless told otherwise.
const DefaultUnknown = "UNKNOWN,INVALID,NOSUCH"

// MaxDelay bounds the ?delay= parameter; a longer delay is answered 400.
const MaxDelay = 10 * time.Minute

// symbolRE is the contract's symbol syntax, applied after upper-casing.
var symbolRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,14}$`)

// ErrInvalidOptions is wrapped by every error New returns.
var ErrInvalidOptions = errors.New("invalid quotesim options")

// Options configures a Server. The zero value serves every valid symbol at
// once, without errors, limits or authentication.
type Options struct {
	// Latency is added to every request that passes validation.
	Latency time.Duration
	// ErrorRate is the fraction, from 0 to 1, of valid requests answered 500.
	ErrorRate float64
	// Seed seeds the random source that picks which requests fail, so that a
	// given sequence of requests always fails the same way.
	Seed uint64
	// RPS limits requests per second with a token bucket whose burst is
	// max(1, ceil(RPS)); requests over the limit are answered 429 with
	// Retry-After. Zero means unlimited.
	RPS float64
	// Unknown lists symbols answered with Finnhub's unknown-symbol quote
	// (200, c == 0, t == 0). Case does not matter.
	Unknown []string
	// APIKey, when not empty, must equal the X-Finnhub-Token header of every
	// request; others are answered 401.
	APIKey string
	// Now is the clock for quote times and the rate limit; nil means
	// time.Now.
	Now func() time.Time
	// Script answers the first len(Script) requests that pass the API key
	// check, one step each in arrival order; see ParseScript.
	Script []Step
	// Logger receives one debug event per request; the zero value logs
	// nothing. The API key is never logged.
	Logger zerolog.Logger
}

// Step is one scripted answer: Status (a 200 step serves the request as
// usual), with a Retry-After header of RetryAfter whole seconds when set.
type Step struct {
	Status     int
	RetryAfter time.Duration
}

// ParseScript parses a comma-separated script of steps STATUS[:SECONDS][*COUNT]:
// "500,429:1" answers the first request 500 and the second 429 with
// Retry-After: 1; "200*100,429:5" serves 100 requests, then answers one 429
// with Retry-After: 5.
func ParseScript(s string) ([]Step, error) {
	var steps []Step
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		spec, count, hasCount := strings.Cut(item, "*")
		n := 1
		if hasCount {
			var err error
			if n, err = strconv.Atoi(count); err != nil || n < 1 || n > 1_000_000 {
				return nil, fmt.Errorf("%w: script step %q: count must be a whole number from 1 to 1000000", ErrInvalidOptions, item)
			}
		}
		code, secs, hasSecs := strings.Cut(spec, ":")
		status, err := strconv.Atoi(code)
		if err != nil || status < 200 || status > 599 {
			return nil, fmt.Errorf("%w: script step %q: want an HTTP status from 200 to 599", ErrInvalidOptions, item)
		}
		step := Step{Status: status}
		if hasSecs {
			sec, err := strconv.Atoi(secs)
			if err != nil || sec < 0 || sec > 3600 {
				return nil, fmt.Errorf("%w: script step %q: Retry-After must be whole seconds from 0 to 3600", ErrInvalidOptions, item)
			}
			step.RetryAfter = time.Duration(sec) * time.Second
		}
		for range n {
			steps = append(steps, step)
		}
	}
	return steps, nil
}

// Quote is the Finnhub quote answer. D and DP are null in the unknown-symbol
// answer, so they are pointers.
type Quote struct {
	C  float64  `json:"c"`  // current price
	D  *float64 `json:"d"`  // change since the previous close
	DP *float64 `json:"dp"` // percent change since the previous close
	H  float64  `json:"h"`  // day high
	L  float64  `json:"l"`  // day low
	O  float64  `json:"o"`  // day open
	PC float64  `json:"pc"` // previous close
	T  int64    `json:"t"`  // quote time, Unix seconds
}

// Stats counts the requests a Server has handled.
type Stats struct {
	// Requests is every request handled, whatever its outcome.
	Requests uint64
	// ByStatus counts answers by HTTP status; statuses never sent are absent.
	ByStatus map[int]uint64
	// Canceled counts requests whose client went away during the delay;
	// they get no answer.
	Canceled uint64
	// Ticks counts requests per tenth of a second, over the last hour, in
	// time order; tenths without requests are absent.
	Ticks []Tick
	// Scripted holds when each scripted answer other than 200 was sent.
	Scripted []time.Time
}

// Tick is the number of requests that arrived in the tenth of a second
// starting At.
type Tick struct {
	At       time.Time
	Requests uint64
}

// BusiestSecond is the most requests that arrived within any one second
// (ten consecutive ticks).
func (st Stats) BusiestSecond() uint64 {
	var best uint64
	for i, t := range st.Ticks {
		var sum uint64
		for _, u := range st.Ticks[i:] {
			if u.At.Sub(t.At) >= time.Second {
				break
			}
			sum += u.Requests
		}
		best = max(best, sum)
	}
	return best
}

// Server is the quote API. It is an http.Handler, safe for concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	unknown map[string]struct{}
	limiter *rate.Limiter // nil when unlimited

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	requests atomic.Uint64
	canceled atomic.Uint64
	byStatus [600]atomic.Uint64

	scriptPos atomic.Uint64

	ticksMu  sync.Mutex // guards ticks and scripted
	ticks    map[int64]uint64
	scripted []time.Time
}

// tickRetention bounds Stats.Ticks.
const tickRetention = time.Hour

var _ http.Handler = (*Server)(nil)

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Latency < 0 {
		return nil, fmt.Errorf("%w: latency %s is negative", ErrInvalidOptions, opts.Latency)
	}
	if !(opts.ErrorRate >= 0 && opts.ErrorRate <= 1) { // also rejects NaN
		return nil, fmt.Errorf("%w: error rate %v is not between 0 and 1", ErrInvalidOptions, opts.ErrorRate)
	}
	if !(opts.RPS >= 0) || math.IsInf(opts.RPS, 0) {
		return nil, fmt.Errorf("%w: rps %v is not a finite number >= 0", ErrInvalidOptions, opts.RPS)
	}
	s := &Server{
		opts:    opts,
		now:     opts.Now,
		unknown: make(map[string]struct{}, len(opts.Unknown)),
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		ticks:   map[int64]uint64{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, sym := range opts.Unknown {
		up := strings.ToUpper(sym)
		if !symbolRE.MatchString(up) {
			return nil, fmt.Errorf("%w: unknown symbol %q is not a valid symbol", ErrInvalidOptions, sym)
		}
		s.unknown[up] = struct{}{}
	}
	if opts.RPS > 0 {
		burst := max(1, int(math.Ceil(opts.RPS)))
		s.limiter = rate.NewLimiter(rate.Limit(opts.RPS), burst)
	}
	return s, nil
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests: s.requests.Load(),
		Canceled: s.canceled.Load(),
		ByStatus: make(map[int]uint64),
	}
	for code := range s.byStatus {
		if n := s.byStatus[code].Load(); n > 0 {
			st.ByStatus[code] = n
		}
	}
	s.ticksMu.Lock()
	for k, n := range s.ticks {
		st.Ticks = append(st.Ticks, Tick{At: time.UnixMilli(k * 100), Requests: n})
	}
	st.Scripted = slices.Clone(s.scripted)
	s.ticksMu.Unlock()
	slices.SortFunc(st.Ticks, func(a, b Tick) int { return a.At.Compare(b.At) })
	return st
}

// count adds a request that arrived at now to its tick, and forgets ticks
// older than tickRetention once a minute's worth of them has piled up.
func (s *Server) count(now time.Time) {
	k := now.UnixMilli() / 100
	s.ticksMu.Lock()
	s.ticks[k]++
	if len(s.ticks) > int(tickRetention/(100*time.Millisecond))+600 {
		for old := range s.ticks {
			if old < k-int64(tickRetention/(100*time.Millisecond)) {
				delete(s.ticks, old)
			}
		}
	}
	s.ticksMu.Unlock()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.requests.Add(1)
	s.count(start)
	status := s.serve(w, r)
	if status == 0 {
		s.canceled.Add(1)
	} else if status > 0 && status < len(s.byStatus) {
		s.byStatus[status].Add(1)
	}
	s.opts.Logger.Debug().
		Str("method", r.Method).
		Str("path", r.URL.Path).
		Str("symbol", r.URL.Query().Get("symbol")).
		Int("status", status).
		Bool("canceled", status == 0).
		Dur("elapsed_ms", time.Since(start)).
		Str("remote", r.RemoteAddr).
		Msg("quote request")
}

// serve answers r and returns the status sent, or 0 if the client went away
// before an answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) int {
	if r.URL.Path != Path {
		return writeError(w, http.StatusNotFound, "not found")
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
	if s.opts.APIKey != "" {
		got := r.Header.Get(TokenHeader)
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.APIKey)) != 1 {
			return writeError(w, http.StatusUnauthorized, "Please use an API key.")
		}
	}
	if n := s.scriptPos.Add(1) - 1; n < uint64(len(s.opts.Script)) {
		if step := s.opts.Script[n]; step.Status != http.StatusOK {
			s.ticksMu.Lock()
			s.scripted = append(s.scripted, time.Now())
			s.ticksMu.Unlock()
			if step.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(int64(step.RetryAfter/time.Second), 10))
			}
			return writeError(w, step.Status, "scripted answer")
		}
	}
	if s.limiter != nil {
		now := s.now()
		res := s.limiter.ReserveN(now, 1)
		if wait := res.DelayFrom(now); !res.OK() || wait > 0 {
			res.CancelAt(now)
			secs := max(1, int64(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			return writeError(w, http.StatusTooManyRequests, "API limit reached. Please try again later.")
		}
	}
	q := r.URL.Query()
	symbol := strings.ToUpper(q.Get("symbol"))
	if !symbolRE.MatchString(symbol) {
		return writeError(w, http.StatusBadRequest, "invalid symbol: want 1 to 15 of A-Z 0-9 . - starting with a letter or digit")
	}
	delay := s.opts.Latency
	if q.Has("delay") {
		d, err := ParseDelay(q.Get("delay"))
		if err != nil {
			return writeError(w, http.StatusBadRequest, err.Error())
		}
		delay += d
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return 0
		}
	}
	if s.opts.ErrorRate > 0 && s.fail() {
		return writeError(w, http.StatusInternalServerError, "simulated server error")
	}
	if _, ok := s.unknown[symbol]; ok {
		return writeJSON(w, http.StatusOK, UnknownQuote())
	}
	return writeJSON(w, http.StatusOK, QuoteFor(symbol, s.now()))
}

// fail draws from the seeded source and reports whether this request fails.
func (s *Server) fail() bool {
	s.mu.Lock()
	f := s.rng.Float64()
	s.mu.Unlock()
	return f < s.opts.ErrorRate
}

// ParseDelay parses a ?delay= value: a Go duration ("3s", "250ms") or a plain
// number of seconds ("3", "0.5"). It rejects negative, non-finite and
// over-MaxDelay values.
func ParseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("invalid delay %q: want a duration like 3s or 250ms, or seconds like 3 or 0.5", v)
		}
		if f < 0 || f > MaxDelay.Seconds() {
			return 0, fmt.Errorf("invalid delay %q: want between 0 and %s", v, MaxDelay)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 || d > MaxDelay {
		return 0, fmt.Errorf("invalid delay %q: want between 0 and %s", v, MaxDelay)
	}
	return d, nil
}

// QuoteFor returns the deterministic quote for symbol (upper-cased first)
// at time now. The price c lies between 5 and 1000 with two decimals, the
// previous close within about 5% of it, and l <= o, c <= h, with l > 0.
func QuoteFor(symbol string, now time.Time) Quote {
	h := fnv.New64a()
	h.Write([]byte(strings.ToUpper(symbol)))
	sum := h.Sum64()

	// Work in cents so the fields agree exactly.
	c := int64(500 + sum%99_501)                         // 5.00 .. 1000.00
	bps := int64((sum>>20)%1001) - 500                   // change, -5.00% .. +5.00%
	pc := max(1, (c*10_000+(10_000+bps)/2)/(10_000+bps)) // rounded c/(1+bps/10000)
	d := c - pc
	o := pc + d*int64((sum>>32)%5)/4            // between pc and c
	spread := c * int64((sum>>40)%151) / 10_000 // up to 1.5% of c
	hi := max(c, o) + spread
	lo := max(1, min(c, o)-spread)

	dp := math.Round(100*float64(d)/float64(pc)*1e4) / 1e4
	dc := cents(d)
	return Quote{
		C:  cents(c),
		D:  &dc,
		DP: &dp,
		H:  cents(hi),
		L:  cents(lo),
		O:  cents(o),
		PC: cents(pc),
		T:  now.Unix(),
	}
}

// UnknownQuote returns Finnhub's answer for an unknown symbol:
// {"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}.
func UnknownQuote() Quote { return Quote{} }

func cents(n int64) float64 { return float64(n) / 100 }

func writeJSON(w http.ResponseWriter, status int, v any) int {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen for our types
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return status
}

func writeError(w http.ResponseWriter, status int, msg string) int {
	return writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
