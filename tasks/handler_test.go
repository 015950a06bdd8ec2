package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/quote"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// apiKey is what the workers send; the fake API refuses anything else.
const apiKey = "handler-test-key-51c0"

// quotedAt is the quote time every fake answer carries.
var quotedAt = time.Unix(1763719200, 0).UTC()

// env is one top-level test's share of the real services: a Redis database
// and a migrated PostgreSQL database of its own. Subtests share it and keep
// apart by queue, task ID and symbol.
type env struct {
	redis asynq.RedisConnOpt
	qc    *asynq.Client
	insp  *asynq.Inspector
	db    *postgres.DB  // what the handler writes with, under the role
	admin *pgxpool.Pool // superuser, for assertions
	role  postgres.Role
}

func newEnv(t *testing.T) *env {
	t.Helper()
	redisOpt := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	tdb := testenv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	db, err := postgres.Open(ctx, postgres.Config{URL: tdb.URL, Role: tdb.Role, MaxConns: 4, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(db.Close)

	pcfg, err := pgxpool.ParseConfig(tdb.URL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	admin, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatalf("admin pool: %v", err)
	}
	t.Cleanup(admin.Close)

	qc := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = qc.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	return &env{redis: redisOpt, qc: qc, insp: insp, db: db, admin: admin, role: tdb.Role}
}

// Forwarding intervals for startWorker.
const (
	// workerForward is worker/main.go's DelayedTaskCheckInterval.
	workerForward = time.Second
	// frozenForward keeps a task that waits to be retried in the retry
	// state for the whole test: with worker/main.go's 1 s, a 1 s backoff
	// (rounded down to whole seconds by asynq) can move it back to pending
	// within milliseconds, too soon to observe the retry reliably.
	frozenForward = time.Hour
)

// workerOption changes what startWorker runs.
type workerOption func(*workerConfig)

type workerConfig struct {
	quoteTimeout time.Duration
	middleware   []asynq.MiddlewareFunc
}

// withQuoteTimeout sets the quote client's timeout (default 300 ms).
func withQuoteTimeout(d time.Duration) workerOption {
	return func(c *workerConfig) { c.quoteTimeout = d }
}

// withMiddleware runs mw around the handler.
func withMiddleware(mw asynq.MiddlewareFunc) workerOption {
	return func(c *workerConfig) { c.middleware = append(c.middleware, mw) }
}

// startWorker runs an asynq server on queue, configured like worker/main.go
// except for the forwarding interval, with the quote-fetch handler talking to
// apiURL. It is shut down when t ends.
func (e *env) startWorker(t *testing.T, apiURL, queue string, forward time.Duration, opts ...workerOption) {
	t.Helper()
	const concurrency = 2
	cfg := workerConfig{quoteTimeout: 300 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	quotes, err := quote.New(quote.Config{
		BaseURL: apiURL, APIKey: apiKey, Timeout: cfg.quoteTimeout, MaxConns: concurrency,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(quotes.Close)
	srv := asynq.NewServer(e.redis, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		ShutdownTimeout:          5 * time.Second,
		IsFailure:                tasks.IsFailure,
		RetryDelayFunc:           tasks.RetryDelay,
		Logger:                   testLogger{t},
		LogLevel:                 asynq.WarnLevel,
		TaskCheckInterval:        200 * time.Millisecond,
		DelayedTaskCheckInterval: forward,
	})
	mux := asynq.NewServeMux()
	mux.Use(cfg.middleware...)
	mux.Handle(tasks.TypeQuoteFetch, tasks.NewQuoteFetchHandler(quotes, e.db))
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown) // before the fake API and the client close
}

// enqueue enqueues a quote-fetch task for symbol on queue.
func (e *env) enqueue(t *testing.T, symbol, queue string, opts ...asynq.Option) *asynq.TaskInfo {
	t.Helper()
	task, err := tasks.NewQuoteFetchTask(symbol, append([]asynq.Option{asynq.Queue(queue), asynq.MaxRetry(3)}, opts...)...)
	if err != nil {
		t.Fatalf("NewQuoteFetchTask(%q): %v", symbol, err)
	}
	info, err := e.qc.Enqueue(task)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return info
}

// waitSettled polls the task until it is neither pending nor active and
// returns it.
func (e *env) waitSettled(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := e.insp.GetTaskInfo(queue, id)
		if err != nil {
			t.Fatalf("GetTaskInfo(%s, %s): %v", queue, id, err)
		}
		if info.State != asynq.TaskStatePending && info.State != asynq.TaskStateActive {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %v after 20s (retried %d, last error %q)", id, info.State, info.Retried, info.LastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFinished polls the task through its retries until it is neither
// pending, active nor waiting to retry, and returns it.
func (e *env) waitFinished(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info := e.waitSettled(t, queue, id)
		if info.State != asynq.TaskStateRetry {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still waiting to retry after 30s (retried %d, last error %q)", info.Retried, info.LastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queueFailures returns the queue's failed counters: today's and in total.
func (e *env) queueFailures(t *testing.T, queue string) (failed, total int) {
	t.Helper()
	qi, err := e.insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatalf("GetQueueInfo(%s): %v", queue, err)
	}
	return qi.Failed, qi.FailedTotal
}

// storedRow is a stock_prices row as text.
type storedRow struct {
	symbol, price, change, dayHigh, prevClose string
	quotedAt                                  time.Time
	writtenBy                                 string
}

// rows returns the stock_prices rows of task id.
func (e *env) rows(t *testing.T, id string) []storedRow {
	t.Helper()
	rows, err := e.admin.Query(context.Background(), `
		SELECT symbol, price::text, coalesce(change::text, ''), coalesce(day_high::text, ''),
		       coalesce(prev_close::text, ''), quoted_at, written_by
		  FROM stock_prices WHERE task_id = $1`, id)
	if err != nil {
		t.Fatalf("query stock_prices: %v", err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedRow, error) {
		var s storedRow
		err := r.Scan(&s.symbol, &s.price, &s.change, &s.dayHigh, &s.prevClose, &s.quotedAt, &s.writtenBy)
		return s, err
	})
	if err != nil {
		t.Fatalf("read stock_prices: %v", err)
	}
	return got
}

// latest returns the latest_prices row of symbol; ok is false when none.
func (e *env) latest(t *testing.T, symbol string) (price, taskID string, at time.Time, ok bool) {
	t.Helper()
	err := e.admin.QueryRow(context.Background(),
		`SELECT price::text, task_id, quoted_at FROM latest_prices WHERE symbol = $1`, symbol).Scan(&price, &taskID, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", time.Time{}, false
	}
	if err != nil {
		t.Fatalf("query latest_prices: %v", err)
	}
	return price, taskID, at, true
}

// fakeAPI is a quote API speaking the contract for one symbol. Requests for
// another symbol, another path or without the key are answered 418, so a
// mistake shows in the task's error rather than passing silently.
type fakeAPI struct {
	*httptest.Server
	calls atomic.Int32
}

// answer is one way the fake API answers; n counts requests from 1.
type answer func(w http.ResponseWriter, r *http.Request, n int32)

func newFakeAPI(t *testing.T, symbol string, a answer) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	// Requests' contexts end with the test, so a hanging answer never holds
	// up the server's Close.
	stop, cancel := context.WithCancel(context.Background())
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/quote" ||
			r.URL.Query().Get("symbol") != symbol || r.Header.Get("X-Finnhub-Token") != apiKey {
			http.Error(w, fmt.Sprintf("fake API for %s: unexpected request %s %s", symbol, r.Method, r.URL), http.StatusTeapot)
			return
		}
		a(w, r, f.calls.Add(1))
	}))
	f.Config.BaseContext = func(net.Listener) context.Context { return stop }
	f.Start()
	t.Cleanup(f.Close)
	t.Cleanup(cancel) // runs first
	return f
}

// Answers.

func body(status int, text string) answer {
	return func(w http.ResponseWriter, _ *http.Request, _ int32) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, text)
	}
}

func ok(text string) answer { return body(http.StatusOK, text) }

func rateLimited(retryAfter func() string) answer {
	return func(w http.ResponseWriter, _ *http.Request, _ int32) {
		w.Header().Set("Retry-After", retryAfter())
		http.Error(w, "too many requests", http.StatusTooManyRequests)
	}
}

// hang never sends headers: it blocks until the request's context ends.
func hang(_ http.ResponseWriter, r *http.Request, _ int32) { <-r.Context().Done() }

// reset hijacks the connection and resets it without answering.
func reset(w http.ResponseWriter, _ *http.Request, _ int32) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// sequence answers the n-th request with answers[n-1], and the last one
// after that.
func sequence(answers ...answer) answer {
	return func(w http.ResponseWriter, r *http.Request, n int32) {
		answers[min(int(n), len(answers))-1](w, r, n)
	}
}

// quoteJSON is a contract answer with price c.
func quoteJSON(c string) string {
	return fmt.Sprintf(`{"c":%s,"d":1.2,"dp":0.7,"h":174.1,"l":171.5,"o":172.0,"pc":172.05,"t":%d}`, c, quotedAt.Unix())
}

type outcome int

const (
	stored          outcome = iota // completed, one row
	archived                       // archived at once, no retry, counted as a failure
	waitsRetryAfter                // waiting for Retry-After, not counted as a failure
	waitsBackoff                   // waiting for the backoff, counted as a failure
)

// TestQuoteFetchAnswers runs the contract's answer table end to end: for each
// answer of the quote API, a real asynq server runs the task against the real
// Redis and PostgreSQL, and the task must end up as the table says.
func TestQuoteFetchAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const price = "173.250000000000000001" // beyond float64: must stay exact
	tooLarge := `{"c":173.25,"t":1763719200,"pad":"` + strings.Repeat("x", quote.MaxBodyBytes) + `"}`
	in30s := func() string { return time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat) }

	for _, tc := range []struct {
		name   string
		symbol string
		answer answer
		// payload, when set, is enqueued as is instead of NewQuoteFetchTask.
		payload string
		want    outcome
		// lastErr: the task's last error must contain one of these.
		lastErr []string
		// retryIn is the Retry-After of waitsRetryAfter rows.
		retryIn time.Duration
	}{
		{name: "200", symbol: "BRK.B", answer: ok(quoteJSON(price)), want: stored},

		{name: "200 c=0 t=0", symbol: "NOSUCH", answer: ok(`{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`),
			want: archived, lastErr: []string{"unknown symbol"}},
		{name: "404", symbol: "GONE", answer: body(404, `{"error":"Symbol not found"}`),
			want: archived, lastErr: []string{"unknown symbol"}},
		{name: "200 NaN", symbol: "NAN", answer: ok(`{"c":NaN,"t":1763719200}`),
			want: archived, lastErr: []string{"invalid quote"}},
		{name: "200 Inf", symbol: "INF", answer: ok(`{"c":1e999,"t":1763719200}`),
			want: archived, lastErr: []string{"c is not a finite number"}},
		{name: "200 null c", symbol: "NULLC", answer: ok(`{"c":null,"t":1763719200}`),
			want: archived, lastErr: []string{"c is missing or null"}},
		{name: "200 missing c", symbol: "NOC", answer: ok(`{"d":1.2,"t":1763719200}`),
			want: archived, lastErr: []string{"c is missing or null"}},
		{name: "200 negative c", symbol: "NEG", answer: ok(quoteJSON("-173.25")),
			want: archived, lastErr: []string{"negative"}},
		{name: "200 string c", symbol: "STRC", answer: ok(`{"c":"173.25","t":1763719200}`),
			want: archived, lastErr: []string{"c is not a number"}},
		{name: "200 string t", symbol: "STRT", answer: ok(`{"c":173.25,"t":"1763719200"}`),
			want: archived, lastErr: []string{"t is not a number"}},
		{name: "200 t after year 9999", symbol: "Y10K", answer: ok(`{"c":1,"t":253402300800}`),
			want: archived, lastErr: []string{"after year 9999"}},
		{name: "200 over 1 MiB", symbol: "BIG", answer: ok(tooLarge),
			want: archived, lastErr: []string{"body too large"}},
		{name: "400", symbol: "BADREQ", answer: body(400, `{"error":"bad request"}`),
			want: archived, lastErr: []string{"400 Bad Request"}},
		{name: "401", symbol: "UNAUTH", answer: body(401, `{"error":"invalid key"}`),
			want: archived, lastErr: []string{"401 Unauthorized"}},
		{name: "403", symbol: "FORBID", answer: body(403, `{"error":"plan"}`),
			want: archived, lastErr: []string{"403 Forbidden"}},
		{name: "invalid symbol in payload", symbol: "A B", answer: ok(quoteJSON("1")), payload: `{"symbol":"a b"}`,
			want: archived, lastErr: []string{"invalid symbol"}},

		{name: "429 Retry-After seconds", symbol: "RL.S", answer: rateLimited(func() string { return "30" }),
			want: waitsRetryAfter, retryIn: 30 * time.Second, lastErr: []string{"429"}},
		{name: "429 Retry-After date", symbol: "RL.D", answer: rateLimited(in30s),
			want: waitsRetryAfter, retryIn: 30 * time.Second, lastErr: []string{"429"}},

		{name: "500", symbol: "E500", answer: body(500, "internal error"),
			want: waitsBackoff, lastErr: []string{"500 Internal Server Error"}},
		{name: "503", symbol: "E503", answer: body(503, "maintenance"),
			want: waitsBackoff, lastErr: []string{"503 Service Unavailable"}},
		{name: "timeout", symbol: "SLOW", answer: hang,
			want: waitsBackoff, lastErr: []string{"deadline exceeded", "timeout"}},
		{name: "reset connection", symbol: "RESET", answer: reset,
			want: waitsBackoff, lastErr: []string{"reset by peer", "EOF"}},
	} {
		// Not parallel: e holds a Redis database, and subtests waiting for
		// a parallel slot would wait on tests that hold the slots while
		// waiting for a database (see package testenv).
		t.Run(tc.name, func(t *testing.T) {
			queue := "answers_" + strings.NewReplacer(" ", "_", "=", "", "/", "").Replace(tc.name)
			api := newFakeAPI(t, tc.symbol, tc.answer)
			e.startWorker(t, api.URL, queue, frozenForward)

			before := time.Now()
			var enq *asynq.TaskInfo
			if tc.payload != "" {
				var err error
				enq, err = e.qc.Enqueue(asynq.NewTask(tasks.TypeQuoteFetch, []byte(tc.payload),
					asynq.Queue(queue), asynq.MaxRetry(3)))
				if err != nil {
					t.Fatal(err)
				}
			} else {
				enq = e.enqueue(t, tc.symbol, queue)
			}
			info := e.waitSettled(t, queue, enq.ID)
			after := time.Now()
			failed, failedTotal := e.queueFailures(t, queue)
			t.Logf("state %v, retried %d, last error %q", info.State, info.Retried, info.LastErr)
			if !info.NextProcessAt.IsZero() {
				t.Logf("next attempt %v after the enqueue", info.NextProcessAt.Sub(before).Round(time.Millisecond))
			}

			wantCalls := int32(1)
			if tc.payload != "" {
				wantCalls = 0 // refused before any request
			}
			if n := api.calls.Load(); n != wantCalls {
				t.Errorf("quote API asked %d times, want %d", n, wantCalls)
			}
			if tc.want != stored {
				if len(e.rows(t, enq.ID)) != 0 {
					t.Errorf("a failed task wrote stock_prices")
				}
				if _, _, _, ok := e.latest(t, tc.symbol); ok {
					t.Errorf("a failed task wrote latest_prices")
				}
				if !containsAny(info.LastErr, tc.lastErr) {
					t.Errorf("LastErr = %q, want it to mention one of %q", info.LastErr, tc.lastErr)
				}
				if strings.Contains(info.LastErr, apiKey) {
					t.Errorf("LastErr leaks the API key: %q", info.LastErr)
				}
			}

			switch tc.want {
			case stored:
				e.checkStored(t, info, tc.symbol, price)
				if failed != 0 || failedTotal != 0 {
					t.Errorf("failed counters %d/%d, want 0/0", failed, failedTotal)
				}

			case archived:
				if info.State != asynq.TaskStateArchived || info.Retried != 0 {
					t.Errorf("state %v after %d retries, want archived at once", info.State, info.Retried)
				}
				if failed != 1 || failedTotal != 1 {
					t.Errorf("failed counters %d/%d, want 1/1", failed, failedTotal)
				}

			case waitsRetryAfter:
				if info.State != asynq.TaskStateRetry || info.Retried != 0 {
					t.Errorf("state %v after %d retries, want retry with none used up", info.State, info.Retried)
				}
				// asynq keeps whole seconds; an HTTP date has whole seconds too.
				lo, hi := before.Add(tc.retryIn-3*time.Second), after.Add(tc.retryIn+time.Second)
				if info.NextProcessAt.Before(lo) || info.NextProcessAt.After(hi) {
					t.Errorf("next attempt in %v, want about %v", info.NextProcessAt.Sub(after), tc.retryIn)
				}
				if failed != 0 || failedTotal != 0 {
					t.Errorf("failed counters %d/%d, want 0/0: a rate limit is not a failure", failed, failedTotal)
				}

			case waitsBackoff:
				if info.State != asynq.TaskStateRetry || info.Retried != 1 {
					t.Errorf("state %v after %d retries, want retry after 1", info.State, info.Retried)
				}
				// The first backoff is 1 s plus up to 20% jitter, which asynq
				// rounds down to a whole second.
				lo, hi := before.Add(time.Second).Truncate(time.Second), after.Add(2200*time.Millisecond)
				if info.NextProcessAt.Before(lo) || info.NextProcessAt.After(hi) {
					t.Errorf("next attempt in %v, want about 1..1.2s", info.NextProcessAt.Sub(after))
				}
				if failed != 1 || failedTotal != 1 {
					t.Errorf("failed counters %d/%d, want 1/1", failed, failedTotal)
				}
			}
		})
	}
}

// checkStored checks a completed task: its one row, written under the role,
// latest_prices, and its result, all with the exact price text.
func (e *env) checkStored(t *testing.T, info *asynq.TaskInfo, symbol, price string) {
	t.Helper()
	if info.State != asynq.TaskStateCompleted {
		t.Fatalf("state %v (last error %q), want completed", info.State, info.LastErr)
	}
	rows := e.rows(t, info.ID)
	if len(rows) != 1 {
		t.Fatalf("%d stock_prices rows for task %s, want 1", len(rows), info.ID)
	}
	want := storedRow{symbol: symbol, price: price, change: "1.2", dayHigh: "174.1", prevClose: "172.05",
		quotedAt: quotedAt, writtenBy: e.role.String()}
	got := rows[0]
	if !got.quotedAt.Equal(want.quotedAt) {
		t.Errorf("quoted_at = %v, want %v", got.quotedAt, want.quotedAt)
	}
	got.quotedAt = want.quotedAt
	if got != want {
		t.Errorf("stock_prices row\n got %+v\nwant %+v", got, want)
	}

	lp, lid, lat, ok := e.latest(t, symbol)
	if !ok || lp != price || lid != info.ID || !lat.Equal(quotedAt) {
		t.Errorf("latest_prices(%s) = %q by %q at %v (found %v), want %q by %q at %v",
			symbol, lp, lid, lat, ok, price, info.ID, quotedAt)
	}

	var res tasks.QuoteFetchResult
	if err := json.Unmarshal(info.Result, &res); err != nil {
		t.Fatalf("result %q: %v", info.Result, err)
	}
	if res.Symbol != symbol || res.Price.String() != price || !res.QuotedAt.Equal(quotedAt) || res.Duplicate {
		t.Errorf("result %s, want symbol %s, price %s, quoted_at %v, not a duplicate", info.Result, symbol, price, quotedAt)
	}
	if !strings.Contains(string(info.Result), `"price":`+price) {
		t.Errorf("result %s does not carry the price as the JSON number %s", info.Result, price)
	}
}

// TestQuoteFetchRecovers follows retries through to the end, with
// worker/main.go's forwarding interval: after a transient failure or a rate
// limit the task runs again and stores the quote, and rate limits never use
// up retries.
func TestQuoteFetchRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	retryAfter1 := rateLimited(func() string { return "1" })
	for _, tc := range []struct {
		name        string
		symbol      string
		maxRetry    int
		answer      answer
		wantCalls   int32
		wantRetried int
		wantFailed  int
	}{
		{"503 then 200", "REC.A", 3, sequence(body(503, "busy"), ok(quoteJSON("10.5"))), 2, 1, 1},
		{"reset then 200", "REC.B", 3, sequence(reset, ok(quoteJSON("10.5"))), 2, 1, 1},
		// With MaxRetry 1, counting the first 429 would archive the task at
		// the second.
		{"429 twice then 200 with MaxRetry 1", "REC.C", 1,
			sequence(retryAfter1, retryAfter1, ok(quoteJSON("10.5"))), 3, 0, 0},
	} {
		// Not parallel: see TestQuoteFetchAnswers.
		t.Run(tc.name, func(t *testing.T) {
			queue := "recovers_" + tc.symbol
			api := newFakeAPI(t, tc.symbol, tc.answer)
			e.startWorker(t, api.URL, queue, workerForward)
			enq := e.enqueue(t, tc.symbol, queue, asynq.MaxRetry(tc.maxRetry))

			info := e.waitFinished(t, queue, enq.ID)
			e.checkStored(t, info, tc.symbol, "10.5")
			if info.Retried != tc.wantRetried {
				t.Errorf("retried %d times, want %d", info.Retried, tc.wantRetried)
			}
			if n := api.calls.Load(); n != tc.wantCalls {
				t.Errorf("quote API asked %d times, want %d", n, tc.wantCalls)
			}
			if failed, total := e.queueFailures(t, queue); failed != tc.wantFailed || total != tc.wantFailed {
				t.Errorf("failed counters %d/%d, want %d", failed, total, tc.wantFailed)
			}
		})
	}
}

// TestQuoteFetchDuplicateDelivery delivers the same task twice: the second
// delivery writes nothing and says so in its result.
func TestQuoteFetchDuplicateDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		symbol = "DUP"
		queue  = "duplicate"
	)
	// Each delivery sees another price; only the first may be stored.
	api := newFakeAPI(t, symbol, sequence(ok(quoteJSON("100.25")), ok(quoteJSON("200.50"))))
	e.startWorker(t, api.URL, queue, workerForward)
	id := testenv.RandomName("dup-")

	first := e.waitSettled(t, queue, e.enqueue(t, symbol, queue, asynq.TaskID(id)).ID)
	e.checkStored(t, first, symbol, "100.25")

	// Deliver it again: asynq refuses a second task with a live ID, so the
	// first is deleted from Redis (as if its record had been lost) and the
	// same ID enqueued anew.
	if err := e.insp.DeleteTask(queue, id); err != nil {
		t.Fatalf("DeleteTask: %v", err)
	}
	second := e.waitSettled(t, queue, e.enqueue(t, symbol, queue, asynq.TaskID(id)).ID)
	if second.State != asynq.TaskStateCompleted {
		t.Fatalf("second delivery: state %v (last error %q), want completed", second.State, second.LastErr)
	}
	t.Logf("second result: %s", second.Result)
	var res tasks.QuoteFetchResult
	if err := json.Unmarshal(second.Result, &res); err != nil {
		t.Fatalf("second result %q: %v", second.Result, err)
	}
	if !res.Duplicate || res.Symbol != symbol {
		t.Errorf("second result %s, want duplicate for %s", second.Result, symbol)
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("quote API asked %d times, want 2", n)
	}
	rows := e.rows(t, id)
	if len(rows) != 1 || rows[0].price != "100.25" {
		t.Errorf("stock_prices rows for %s: %+v, want one at 100.25", id, rows)
	}
	if lp, lid, _, _ := e.latest(t, symbol); lp != "100.25" || lid != id {
		t.Errorf("latest_prices(%s) = %q by %q, want 100.25 by %q", symbol, lp, lid, id)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// testLogger sends asynq's log to the test's.
type testLogger struct{ t *testing.T }

func (l testLogger) Debug(args ...any) { l.t.Log(append([]any{"asynq DEBUG:"}, args...)...) }
func (l testLogger) Info(args ...any)  { l.t.Log(append([]any{"asynq INFO:"}, args...)...) }
func (l testLogger) Warn(args ...any)  { l.t.Log(append([]any{"asynq WARN:"}, args...)...) }
func (l testLogger) Error(args ...any) { l.t.Log(append([]any{"asynq ERROR:"}, args...)...) }
func (l testLogger) Fatal(args ...any) { l.t.Error(append([]any{"asynq FATAL:"}, args...)...) }
