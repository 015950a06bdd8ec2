package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// downProxy is testenv.ProxyURL with the proxy cut off.
func downProxy(t *testing.T, rawURL string) (*testenv.Proxy, string) {
	t.Helper()
	p, proxied := testenv.ProxyURL(t, rawURL)
	p.SetDown(true)
	return p, proxied
}

// getBody answers the status and body of GET url, or 0 if it could not connect.
func getBody(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitBody waits until GET url answers code with a body containing want.
func waitBody(t *testing.T, url string, code int, want string, timeout time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var gotCode int
	var gotBody string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited early: %v\n%s", p.name, p.err, p.logs.String())
		default:
		}
		if gotCode, gotBody = getBody(url); gotCode == code && strings.Contains(gotBody, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s = %d %q, want %d containing %q within %s", url, gotCode, gotBody, code, want, timeout)
}

// A worker started while Postgres is unreachable waits for it, telling
// /readyz what it waits for, and then works normally.
func TestWorkerWaitsForPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	pg, dbURL := downProxy(t, e.db.URL)
	p := e.start("worker", []string{
		"ADMIN_ADDR=127.0.0.1:0", "QUOTE_API_URL=" + quoteURL,
		"DATABASE_URL=" + dbURL,
	}, "--connect-timeout", "2m")
	admin := "http://" + e.loggedAddr(p, "admin server listening")

	waitBody(t, admin+"/readyz", http.StatusServiceUnavailable, "starting: waiting for postgres (attempt 3)", 30*time.Second, p)
	if code, body := getBody(admin + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz while waiting = %d %q, want 200", code, body)
	}
	if logs := p.logs.String(); !strings.Contains(logs, `"attempt":2,"next_delay_ms":`) ||
		!strings.Contains(logs, "postgres: not reachable yet, retrying") {
		t.Errorf("no attempt lines logged:\n%s", tail(logs, 2048))
	}

	pg.SetDown(false)
	e.readyThenWorks(p, admin)
}

// A worker that cannot reach Postgres within --connect-timeout exits 1
// with one line saying it gave up.
func TestWorkerGivesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, dbURL := downProxy(t, e.db.URL)
	start := time.Now()
	r := e.run("worker", nil, []string{"DATABASE_URL=" + dbURL}, "--connect-timeout", "3s")
	took := time.Since(start)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", r.code, tail(r.stderr, 2048))
	}
	if took < 3*time.Second || took > 15*time.Second {
		t.Errorf("gave up after %s, want soon after the 3s bound", took)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "postgres: gave up after") {
		t.Errorf("last stderr line = %q, want one saying it gave up", last)
	}
}

// SIGTERM while the worker waits for Redis ends it at once with exit 0.
func TestWorkerSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, redisURL := downProxy(t, e.redis)
	p := e.start("worker", []string{"ADMIN_ADDR=127.0.0.1:0", "REDIS_URL=" + redisURL},
		"--connect-timeout", "5m")
	admin := "http://" + e.loggedAddr(p, "admin server listening")
	waitBody(t, admin+"/readyz", http.StatusServiceUnavailable, "starting: waiting for redis (attempt 2)", 30*time.Second, p)
	start := time.Now()
	if code := p.stop(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM while waiting, want 0", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to exit after SIGTERM, want prompt", d)
	}
}

// A bad --connect-timeout is bad usage: exit 2, before any connection.
func TestWorkerBadConnectTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{name: "flag", args: []string{"--connect-timeout", "soon"}},
		{name: "negative", args: []string{"--connect-timeout", "-1s"}},
		{name: "env", env: []string{"WORKER_CONNECT_TIMEOUT=5"}},
	} {
		r := e.run("worker", nil, append(tc.env, "DATABASE_URL=postgres://postgres@127.0.0.1:1/x"), tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "connect-timeout") {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming connect-timeout", tc.name, r.code, r.stderr)
		}
	}
}

// readyThenWorks waits until the worker p, whose admin server is admin, is
// ready after waiting for a service, then checks that it runs a job and
// exits 0 on SIGTERM.
func (e *env) readyThenWorks(p *proc, admin string) {
	t := e.t
	t.Helper()
	waitHTTP(t, admin+"/readyz", 30*time.Second, p)
	e.enqueueFile([]string{"GOOG"})
	e.producer(nil, "wait", "--timeout", "30s")
	if rows, _ := e.rows(); rows != 1 {
		t.Errorf("rows = %d after the wait, want 1", rows)
	}
	if code := p.stop(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}
