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
