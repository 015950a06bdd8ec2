package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// What the soak's sampler can and cannot see.
//
// PostgreSQL shows no other backend's current_user: pg_stat_activity's
// usename is the session user, and so is every pg_stat_get_backend_*
// function's. Only the backend itself can compare the two, which is what
// the worker's pool guard does on every acquire (SELECT current_user =
// session_user, internal/postgres/db.go prepareConn); it destroys a
// connection that fails and counts it in tickerq_pg_role_leaks_total. So the
// sampler reads that counter from every worker, and from pg_stat_activity
// the one thing that would betray a role carried past a transaction from
// the outside: the statement that set it. A role outlives its transaction
// only through a session-level SET [SESSION] ROLE, SET SESSION
// AUTHORIZATION or set_config('role', …, false); the worker's only role
// statement is SET LOCAL ROLE, which ends with the transaction, so an
// idle backend (outside any transaction) whose last statement is SET LOCAL
// ROLE has run it outside a transaction: the BEGIN before it was lost.
// A sample therefore proves that no backend of the test's database was
// seen with such a statement as its last; it cannot prove that a
// statement between two samples did not set a role, which the guard's
// counter and the rows' written_by column (current_user at insert) cover.

// soakRoleStatement matches statements that set a role beyond the
// transaction; SET LOCAL ROLE does not match.
var soakRoleStatement = regexp.MustCompile(`(?is)\bset\s+(session\s+)?(role|session\s+authorization)\b|\bset_config\s*\(\s*'role'`)

// soakBadActivity reports why a pg_stat_activity row could be a backend
// carrying a role past its transaction, or one that wrote prices outside
// the role's transaction (the converse fault: SQL as the login user), or
// "" when it is neither.
func soakBadActivity(state, query string) string {
	q := strings.ToUpper(strings.TrimSpace(query))
	switch {
	case soakRoleStatement.MatchString(query):
		return "session-level role statement"
	case state == "idle" && strings.HasPrefix(q, "SET LOCAL ROLE"):
		return "SET LOCAL ROLE outside a transaction"
	case state == "idle" && strings.Contains(q, "INSERT INTO STOCK_PRICES"):
		return "price write outside a transaction"
	}
	return ""
}

// soakSampler samples the workers' role guard counters and the test
// database's pg_stat_activity every soakSamplePeriod.
type soakSampler struct {
	e      *env
	conn   *pgx.Conn
	admins []string // worker admin addresses, set before start
	skip   []uint32 // the test's own backends, set before start
	stopCh chan struct{}
	done   chan struct{}

	mu          sync.Mutex
	samples     int
	scrapeErrs  int
	pgErrs      int
	maxLeaks    float64
	bad         int // bad pg_stat_activity rows over all samples
	maxBad      int // most bad rows in one sample
	badExamples []string
	backends    int            // worker backend rows seen over all samples
	byState     map[string]int // rows seen, by state and the last statement's first words
}

func newSoakSampler(t *testing.T, e *env) *soakSampler {
	t.Helper()
	return &soakSampler{e: e, conn: e.db.Conn(t), stopCh: make(chan struct{}), done: make(chan struct{}), byState: map[string]int{}}
}

// selfCheck shows that the pg_stat_activity check can fail: a backend left
// with a session-level SET ROLE, the leak the guard exists for, must be
// reported.
func (s *soakSampler) selfCheck(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	leaky, err := pgx.Connect(ctx, s.e.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer leaky.Close(ctx) // on a failure below; closing twice is safe
	pid := leaky.PgConn().PID()
	if _, err := leaky.Exec(ctx, "SET ROLE "+pgx.Identifier{s.e.db.Role.String()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	bad, _, err := s.activity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 {
		t.Fatalf("sampler self-check: a backend left under SET ROLE gave %d bad rows (%v), want 1", len(bad), bad)
	}
	// Gone before the soak samples, or its row would count.
	_ = leaky.Close(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left bool
		if err := s.conn.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1", pid).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if !left {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sampler self-check: backend %d still there 10 s after its connection closed", pid)
		}
	}
}

// activity reads pg_stat_activity for the test database's client backends
// other than the sampler's own and those in skip: the workers'.
func (s *soakSampler) activity(ctx context.Context) (bad []string, seen map[string]int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	skip := append([]uint32{}, s.skip...) // not nil: pid <> ALL(NULL) is never true
	rows, err := s.conn.Query(ctx, `
		SELECT pid, coalesce(state, ''), coalesce(query, '')
		  FROM pg_stat_activity
		 WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> ALL($2::int[])
		   AND backend_type = 'client backend'`, s.e.db.Name, skip)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	seen = map[string]int{}
	for rows.Next() {
		var pid int
		var state, query string
		if err := rows.Scan(&pid, &state, &query); err != nil {
			return nil, nil, fmt.Errorf("scan pg_stat_activity: %w", err)
		}
		if why := soakBadActivity(state, query); why != "" {
			bad = append(bad, fmt.Sprintf("pid %d %s: %s: %.80q", pid, state, why, query))
		}
		seen[state+" | "+soakFirstWords(query)]++
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	return bad, seen, nil
}

// soakFirstWords is a statement's kind for the tally: its first two words.
func soakFirstWords(q string) string {
	f := strings.Fields(q)
	return strings.ToUpper(strings.Join(f[:min(2, len(f))], " "))
}

func (s *soakSampler) start() { go s.run() }

// run samples until stop; the test owns it through stop.
func (s *soakSampler) run() {
	defer close(s.done)
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(soakSamplePeriod)
	defer tick.Stop()
	for {
		s.sample(client)
		select {
		case <-s.stopCh:
			s.sample(client) // one more after the last job
			return
		case <-tick.C:
		}
	}
}

func (s *soakSampler) sample(client *http.Client) {
	leaks, scrapeErrs := 0.0, 0
	for _, addr := range s.admins {
		v, err := scrapeMetric(client, "http://"+addr+"/metrics", "tickerq_pg_role_leaks_total")
		if err != nil {
			scrapeErrs++
			continue
		}
		leaks = max(leaks, v)
	}
	bad, seen, err := s.activity(context.Background())

	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.scrapeErrs += scrapeErrs
	s.maxLeaks = max(s.maxLeaks, leaks)
	if err != nil {
		s.pgErrs++
		return
	}
	s.bad += len(bad)
	s.maxBad = max(s.maxBad, len(bad))
	if len(s.badExamples) < 10 {
		s.badExamples = append(s.badExamples, bad...)
	}
	for k, v := range seen {
		s.byState[k] += v
		s.backends += v
	}
}

// stop ends the sampling after one last sample.
func (s *soakSampler) stop() {
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	<-s.done
}

// soakSamples is what the sampler saw.
type soakSamples struct {
	samples, scrapeErrs, pgErrs, bad, maxBad int
	maxLeaks                                 float64
	badExamples                              []string
}

// report logs the sampler's figures and returns them.
func (s *soakSampler) report(t *testing.T) soakSamples {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.byState))
	for k := range s.byState {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.byState[keys[i]] > s.byState[keys[j]] })
	var tally strings.Builder
	for _, k := range keys[:min(12, len(keys))] {
		fmt.Fprintf(&tally, "\n\t%8d  %s", s.byState[k], k)
	}
	t.Logf("sampler: %d samples every %s; %d failed metric scrapes, %d failed pg_stat_activity reads; max tickerq_pg_role_leaks_total %v; bad pg_stat_activity rows %d in all, at most %d in one sample; %d backend rows seen, by state | last statement:%s",
		s.samples, soakSamplePeriod, s.scrapeErrs, s.pgErrs, s.maxLeaks, s.bad, s.maxBad, s.backends, tally.String())
	return soakSamples{samples: s.samples, scrapeErrs: s.scrapeErrs, pgErrs: s.pgErrs, bad: s.bad, maxBad: s.maxBad,
		maxLeaks: s.maxLeaks, badExamples: append([]string(nil), s.badExamples...)}
}

// scrapeMetric reads one unlabelled sample from a Prometheus text page.
func scrapeMetric(client *http.Client, url, name string) (float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	v, ok, err := findSample(string(b), name)
	switch {
	case err != nil:
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	case !ok:
		return 0, fmt.Errorf("scrape %s: no %s", url, name)
	}
	return v, nil
}
