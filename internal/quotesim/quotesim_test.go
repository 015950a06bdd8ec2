package quotesim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/quotesim"
)

// fixedNow is the clock of every test server: quote times are checkable and
// the rate limiter never refills on its own.
var fixedNow = time.Unix(1763719200, 0)

func newServer(t *testing.T, opts quotesim.Options) *quotesim.Server {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	s, err := quotesim.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// get runs one request through h and returns the recorded answer.
func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeMap(t *testing.T, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return m
}

func decodeQuote(t *testing.T, body []byte) quotesim.Quote {
	t.Helper()
	var q quotesim.Quote
	if err := json.Unmarshal(body, &q); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return q
}

func TestQuoteDeterministic(t *testing.T) {
	t.Parallel()
	s1 := newServer(t, quotesim.Options{})
	s2 := newServer(t, quotesim.Options{Seed: 99})
	seen := map[float64]string{}
	for _, sym := range []string{"GOOG", "AAPL", "MSFT", "BRK.B", "RDS-A", "X", "0700.HK", "ABCDEFGHIJKLMNO"} {
		a := get(t, s1, "/api/v1/quote?symbol="+sym, nil)
		b := get(t, s2, "/api/v1/quote?symbol="+strings.ToLower(sym), nil)
		if a.Code != http.StatusOK || b.Code != http.StatusOK {
			t.Fatalf("%s: status %d and %d, want 200", sym, a.Code, b.Code)
		}
		if a.Body.String() != b.Body.String() {
			t.Errorf("%s: answers differ:\n%s\n%s", sym, a.Body, b.Body)
		}
		q := decodeQuote(t, a.Body.Bytes())
		if prev, dup := seen[q.C]; dup {
			t.Logf("%s and %s share price %v (allowed, but unlikely)", sym, prev, q.C)
		}
		seen[q.C] = sym
	}
}

func TestQuoteInvariants(t *testing.T) {
	t.Parallel()
	for i := range 2000 {
		sym := "S" + strconv.Itoa(i)
		q := quotesim.QuoteFor(sym, fixedNow)
		if q.C < 5 || q.C > 1000 {
			t.Errorf("%s: c = %v, want 5..1000", sym, q.C)
		}
		if !(q.L > 0 && q.L <= q.C && q.C <= q.H && q.L <= q.O && q.O <= q.H) {
			t.Errorf("%s: want 0 < l <= c,o <= h: %+v", sym, q)
		}
		if q.PC <= 0 || q.D == nil || q.DP == nil {
			t.Fatalf("%s: bad pc/d/dp: %+v", sym, q)
		}
		if got := round(q.C-q.PC, 2); got != *q.D {
			t.Errorf("%s: d = %v, want c-pc = %v", sym, *q.D, got)
		}
		if got := round(100**q.D/q.PC, 4); math.Abs(got-*q.DP) > 1e-4 {
			t.Errorf("%s: dp = %v, want 100*d/pc = %v", sym, *q.DP, got)
		}
		for name, v := range map[string]float64{"c": q.C, "h": q.H, "l": q.L, "o": q.O, "pc": q.PC, "d": *q.D} {
			if round(v, 2) != v {
				t.Errorf("%s: %s = %v has more than 2 decimals", sym, name, v)
			}
		}
		if q.T != fixedNow.Unix() {
			t.Errorf("%s: t = %d, want %d", sym, q.T, fixedNow.Unix())
		}
	}
}

func TestQuoteFormat(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{})
	rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := decodeMap(t, rec.Body.Bytes())
	want := []string{"c", "d", "dp", "h", "l", "o", "pc", "t"}
	if len(m) != len(want) {
		t.Errorf("fields %v, want exactly %v", m, want)
	}
	for _, k := range want {
		n, ok := m[k].(json.Number)
		if !ok {
			t.Errorf("%s = %#v (%T), want a JSON number", k, m[k], m[k])
			continue
		}
		if _, err := n.Float64(); err != nil {
			t.Errorf("%s = %v: %v", k, n, err)
		}
	}
	if got := m["t"].(json.Number).String(); got != "1763719200" {
		t.Errorf("t = %s, want 1763719200 (integer Unix seconds)", got)
	}
}

func TestUnknownSymbols(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{Unknown: strings.Split(quotesim.DefaultUnknown, ",")})
	for _, sym := range []string{"UNKNOWN", "invalid", "NoSuch"} {
		t.Run(sym, func(t *testing.T) {
			t.Parallel()
			rec := get(t, s, "/api/v1/quote?symbol="+sym, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200", rec.Code)
			}
			const want = `{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`
			if got := strings.TrimSpace(rec.Body.String()); got != want {
				t.Errorf("body %s, want %s", got, want)
			}
		})
	}
	if rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil); decodeQuote(t, rec.Body.Bytes()).C <= 0 {
		t.Errorf("GOOG answered as unknown: %s", rec.Body)
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{})
	tests := []struct {
		name   string
		method string
		target string
		want   int
	}{
		{"missing symbol", http.MethodGet, "/api/v1/quote", http.StatusBadRequest},
		{"empty symbol", http.MethodGet, "/api/v1/quote?symbol=", http.StatusBadRequest},
		{"too long", http.MethodGet, "/api/v1/quote?symbol=ABCDEFGHIJKLMNOP", http.StatusBadRequest},
		{"leading dot", http.MethodGet, "/api/v1/quote?symbol=.A", http.StatusBadRequest},
		{"bad char", http.MethodGet, "/api/v1/quote?symbol=GO%20OG", http.StatusBadRequest},
		{"slash", http.MethodGet, "/api/v1/quote?symbol=A/B", http.StatusBadRequest},
		{"other path", http.MethodGet, "/api/v1/quotes?symbol=GOOG", http.StatusNotFound},
		{"root", http.MethodGet, "/", http.StatusNotFound},
		{"post", http.MethodPost, "/api/v1/quote?symbol=GOOG", http.StatusMethodNotAllowed},
		{"delete", http.MethodDelete, "/api/v1/quote?symbol=GOOG", http.StatusMethodNotAllowed},
		{"ok lower case", http.MethodGet, "/api/v1/quote?symbol=brk.b", http.StatusOK},
		{"ok dash", http.MethodGet, "/api/v1/quote?symbol=RDS-A", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want != http.StatusOK {
				if m := decodeMap(t, rec.Body.Bytes()); m["error"] == "" || m["error"] == nil {
					t.Errorf("error body %s has no error message", rec.Body)
				}
			}
			if tt.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodGet {
				t.Errorf("Allow = %q, want GET", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestParseDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"3s", 3 * time.Second, false},
		{"250ms", 250 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"3", 3 * time.Second, false},
		{"0.5", 500 * time.Millisecond, false},
		{"0", 0, false},
		{"", 0, true},
		{"abc", 0, true},
		{"-1", 0, true},
		{"-1s", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"1e9", 0, true},
		{"11m", 0, true},
		{"3 s", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := quotesim.ParseDelay(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseDelay(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDelayParam(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{})
	tests := []struct {
		delay string
		min   time.Duration
		want  int
	}{
		{"50ms", 50 * time.Millisecond, http.StatusOK},
		{"0.05", 50 * time.Millisecond, http.StatusOK},
		{"0", 0, http.StatusOK},
		{"soon", 0, http.StatusBadRequest},
		{"-2", 0, http.StatusBadRequest},
		{"", 0, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run("delay="+tt.delay, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			rec := get(t, s, "/api/v1/quote?symbol=GOOG&delay="+tt.delay, nil)
			elapsed := time.Since(start)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if elapsed < tt.min || elapsed > tt.min+10*time.Second {
				t.Errorf("took %v, want about %v", elapsed, tt.min)
			}
		})
	}
}

func TestLatencyOption(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{Latency: 30 * time.Millisecond})
	start := time.Now()
	rec := get(t, s, "/api/v1/quote?symbol=GOOG&delay=20ms", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("took %v, want latency + delay = 50ms", elapsed)
	}
	// Invalid requests are answered before the latency.
	if rec := get(t, s, "/api/v1/quote?symbol=", nil); rec.Code != http.StatusBadRequest {
		t.Errorf("status %d, want 400", rec.Code)
	}
}

func TestDelayCanceledByClient(t *testing.T) {
	t.Parallel()

	t.Run("handler", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, quotesim.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/quote?symbol=GOOG&delay=5m", nil)
		rec := httptest.NewRecorder()
		start := time.Now()
		s.ServeHTTP(rec, req)
		if elapsed := time.Since(start); elapsed > 30*time.Second {
			t.Fatalf("handler took %v after the client left", elapsed)
		}
		if rec.Body.Len() != 0 {
			t.Errorf("answered %d %s to a client that left", rec.Code, rec.Body)
		}
		st := s.Stats()
		if st.Requests != 1 || st.Canceled != 1 || len(st.ByStatus) != 0 {
			t.Errorf("stats %+v, want 1 request, 1 canceled, no statuses", st)
		}
	})

	t.Run("http", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, quotesim.Options{})
		ts := httptest.NewServer(s)
		defer ts.Close() // waits for the handler to return
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/quote?symbol=GOOG&delay=300", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got %s, want the client's deadline", resp.Status)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context deadline exceeded", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for s.Stats().Canceled != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("handler still waiting after the client left: %+v", s.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestErrorRate(t *testing.T) {
	t.Parallel()
	const n = 1000
	tests := []struct {
		name     string
		rate     float64
		seed     uint64
		min, max int
	}{
		{"never", 0, 1, 0, 0},
		{"always", 1, 1, n, n},
		{"thirty percent", 0.3, 42, 250, 350},
		{"thirty percent other seed", 0.3, 7, 250, 350},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			count := func() int {
				s := newServer(t, quotesim.Options{ErrorRate: tt.rate, Seed: tt.seed})
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil)
						if rec.Code != http.StatusOK && rec.Code != http.StatusInternalServerError {
							t.Errorf("status %d, want 200 or 500", rec.Code)
						}
					})
				}
				wg.Wait()
				st := s.Stats()
				if st.Requests != n || st.ByStatus[200]+st.ByStatus[500] != n {
					t.Errorf("stats %+v do not add up to %d", st, n)
				}
				return int(st.ByStatus[500])
			}
			first := count()
			if first < tt.min || first > tt.max {
				t.Errorf("%d of %d failed, want %d..%d", first, n, tt.min, tt.max)
			}
			if again := count(); again != first {
				t.Errorf("same seed failed %d then %d times, want the same", first, again)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rps        float64
		burst      int
		retryAfter string
	}{
		{"fractional", 0.5, 1, "2"},
		{"one", 1, 1, "1"},
		{"many", 5, 5, "1"},
		{"ceil burst", 2.5, 3, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := fixedNow
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			s := newServer(t, quotesim.Options{RPS: tt.rps, Now: clock})
			for i := range tt.burst {
				if rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil); rec.Code != http.StatusOK {
					t.Fatalf("request %d: status %d, want 200 within the burst", i, rec.Code)
				}
			}
			rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil)
			if rec.Code != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429 past the burst", rec.Code)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if m := decodeMap(t, rec.Body.Bytes()); m["error"] == nil {
				t.Errorf("429 body %s has no error", rec.Body)
			}
			// Rate limiting comes before symbol validation.
			if rec := get(t, s, "/api/v1/quote?symbol=", nil); rec.Code != http.StatusTooManyRequests {
				t.Errorf("invalid symbol over the limit: status %d, want 429", rec.Code)
			}
			// After Retry-After the client gets through again.
			secs, _ := strconv.Atoi(tt.retryAfter)
			mu.Lock()
			now = now.Add(time.Duration(secs) * time.Second)
			mu.Unlock()
			if rec := get(t, s, "/api/v1/quote?symbol=GOOG", nil); rec.Code != http.StatusOK {
				t.Errorf("after Retry-After: status %d, want 200", rec.Code)
			}
		})
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{RPS: 10})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { get(t, s, "/api/v1/quote?symbol=GOOG", nil) })
	}
	wg.Wait()
	st := s.Stats()
	if st.ByStatus[200] != 10 || st.ByStatus[429] != 90 {
		t.Errorf("stats %+v, want 10 answered and 90 limited with a frozen clock", st)
	}
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, quotesim.Options{APIKey: "s3cret"})
	tests := []struct {
		name   string
		header http.Header
		target string
		want   int
	}{
		{"no header", nil, "/api/v1/quote?symbol=GOOG", http.StatusUnauthorized},
		{"wrong key", http.Header{"X-Finnhub-Token": {"nope"}}, "/api/v1/quote?symbol=GOOG", http.StatusUnauthorized},
		{"prefix of key", http.Header{"X-Finnhub-Token": {"s3cre"}}, "/api/v1/quote?symbol=GOOG", http.StatusUnauthorized},
		{"right key", http.Header{"X-Finnhub-Token": {"s3cret"}}, "/api/v1/quote?symbol=GOOG", http.StatusOK},
		{"auth before validation", nil, "/api/v1/quote?symbol=", http.StatusUnauthorized},
		{"path before auth", nil, "/nope", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := get(t, s, tt.target, tt.header)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "s3cret") {
				t.Errorf("body leaks the key: %s", rec.Body)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts quotesim.Options
	}{
		{"negative error rate", quotesim.Options{ErrorRate: -0.1}},
		{"error rate above 1", quotesim.Options{ErrorRate: 1.5}},
		{"negative rps", quotesim.Options{RPS: -1}},
		{"negative latency", quotesim.Options{Latency: -time.Second}},
		{"bad unknown symbol", quotesim.Options{Unknown: []string{"no way"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := quotesim.New(tt.opts); !errors.Is(err, quotesim.ErrInvalidOptions) {
				t.Errorf("New: err %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestOverHTTP(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(newServer(t, quotesim.Options{}))
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + "/api/v1/quote?symbol=GOOG")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	want := quotesim.QuoteFor("GOOG", fixedNow)
	got := decodeQuote(t, body)
	if got.C != want.C || *got.D != *want.D || *got.DP != *want.DP || got.T != want.T {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func round(v float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(v*p) / p
}
