package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// TestWorkerRedactsSecrets runs the worker against a quote API that echoes
// the key in its 401 and 500 bodies, through a QUOTE_API_URL with a
// password: neither the key nor the password shows in the worker's log
// (its config line and job lines) or in the tasks' last errors in Redis,
// which the web UI shows.
func TestWorkerRedactsSecrets(t *testing.T) {
	t.Parallel()
	const key, password = "sk_LIVE_9f8e7d", "pw5ecret"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusUnauthorized
		if r.URL.Query().Get("symbol") == "FIVEXX" {
			code = http.StatusInternalServerError
		}
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"error":"invalid api key: %s"}`, r.Header.Get("X-Finnhub-Token"))
	}))
	t.Cleanup(api.Close)
	u, err := url.Parse(api.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("user", password)

	e := newEnv(t)
	worker, _ := e.startWorker([]string{"QUOTE_API_URL=" + u.String(), "QUOTE_API_KEY=" + key})

	opt := testenv.RedisClientOpt(t, e.redis)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	ids := map[string]asynq.TaskState{}
	for sym, want := range map[string]asynq.TaskState{"GOOG": asynq.TaskStateArchived, "FIVEXX": asynq.TaskStateRetry} {
		task, err := tasks.NewQuoteFetchTask(sym)
		if err != nil {
			t.Fatal(err)
		}
		info, err := client.Enqueue(task)
		if err != nil {
			t.Fatal(err)
		}
		ids[info.ID] = want
	}

	deadline := time.Now().Add(30 * time.Second)
	for id, want := range ids {
		for {
			info, err := insp.GetTaskInfo("default", id)
			if err != nil {
				t.Fatal(err)
			}
			if info.State == want && info.LastErr != "" {
				if strings.Contains(info.LastErr, key) || strings.Contains(info.LastErr, password) || !strings.Contains(info.LastErr, "[REDACTED]") {
					t.Errorf("task %s (%s) last error %q: want the echoed key as [REDACTED]", id, info.State, info.LastErr)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s is %s (last error %q), want %s", id, info.State, info.LastErr, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code := worker.stop(t, 30*time.Second); code != 0 {
		t.Errorf("worker exited %d on SIGTERM", code)
	}
	logs := worker.logs.String()
	for _, secret := range []string{key, password} {
		if strings.Contains(logs, secret) {
			t.Errorf("worker log shows %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `"quote_api_url":"http://user:[REDACTED]@`) {
		t.Errorf("worker's config line does not show QUOTE_API_URL as user:[REDACTED]:\n%s", logs)
	}
	if n := strings.Count(logs, `invalid api key: [REDACTED]`); n < 2 {
		t.Errorf("worker log has %d job lines with the redacted body, want at least 2:\n%s", n, logs)
	}
}

// TestWorkerChecksSettingsBeforeConnecting: with Redis and Postgres both
// unreachable, every bad setting still exits 2 with one line naming it,
// because the worker checks them all before its first connection.
func TestWorkerChecksSettingsBeforeConnecting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	down := []string{"DATABASE_URL=postgres://postgres@127.0.0.1:1/x", "REDIS_URL=redis://127.0.0.1:1/0"}
	for _, tc := range []struct {
		env  string
		want string
	}{
		{"QUOTE_API_URL=ftp://x", "QUOTE_API_URL"},
		{"QUOTE_API_URL=http://", "QUOTE_API_URL"},
		{"QUOTE_API_URL=http://u:s3cret@h:99999", "QUOTE_API_URL"},
		{"QUOTE_API_KEY=s3cret\x01", "QUOTE_API_KEY"},
		{"QUOTE_API_KEY= s3cret", "QUOTE_API_KEY"},
		{"QUOTE_RATE_LIMIT=fast", "QUOTE_RATE_LIMIT"},
		{"DB_ROLE=Writer", "DB_ROLE"},
		{"WORKER_QUEUES=default=x", "queues"},
		{"WORKER_CONCURRENCY=0", "concurrency"},
		{"ADMIN_ADDR=nohostport", "ADMIN_ADDR"},
		{"DATABASE_URL=postgres://u:s3cret@127.0.0.1:1/x?pool_max_conns=abc", "DATABASE_URL"},
		{"REDIS_URL=redis://:s3cret@127.0.0.1:99x/0", "REDIS_URL"},
		{"LOG_LEVEL=loud", "LOG_LEVEL"},
		{"LOG_FORMAT=xml", "LOG_FORMAT"},
	} {
		r := e.run("worker", nil, append(down, tc.env))
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "worker: ") ||
			!strings.Contains(lines[0], tc.want) || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("worker with %q and services down: exit %d, stderr %q; want exit 2 and one line naming %s, no secret",
				tc.env, r.code, r.stderr, tc.want)
		}
	}
}
