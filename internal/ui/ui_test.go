package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// nowhere is a Redis that refuses connections, for handlers whose tested
// paths never reach Redis.
var nowhere = asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond}

func TestFormatPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, taskType, payload, want string
	}{
		{"quote fetch", tasks.TypeQuoteFetch, `{"symbol":"GOOG"}`, "GOOG"},
		{"dotted symbol", tasks.TypeQuoteFetch, `{"symbol":"BRK.B","extra":1}`, "BRK.B"},
		{"lower case is normalized", tasks.TypeQuoteFetch, `{"symbol":"goog"}`, "GOOG"},
		{"invalid symbol", tasks.TypeQuoteFetch, `{"symbol":"BAD$"}`, `{"symbol":"BAD$"}`},
		{"not JSON", tasks.TypeQuoteFetch, `GOOG`, "GOOG"},
		{"empty", tasks.TypeQuoteFetch, ``, ``},
		{"other type", "email:send", `{"symbol":"GOOG"}`, `{"symbol":"GOOG"}`},
		{"multi-line text", "email:send", "line 1\nline 2", "line 1\nline 2"},
		{"not UTF-8", "blob", "\xff\x00x", `"\xff\x00x"`},
	} {
		if got := formatPayload(tc.taskType, []byte(tc.payload)); got != tc.want {
			t.Errorf("%s: formatPayload(%q, %q) = %q, want %q", tc.name, tc.taskType, tc.payload, got, tc.want)
		}
	}
}

func TestFormatResult(t *testing.T) {
	t.Parallel()
	const goog = `{"symbol":"GOOG","price":173.25,"quoted_at":"2025-11-21T14:30:00Z"}`
	for _, tc := range []struct {
		name, taskType, result, want string
	}{
		{"quote fetch", tasks.TypeQuoteFetch, goog, "173.25 USD @ 14:30:00Z"},
		{"task detail passes no type", "", goog, "173.25 USD @ 14:30:00Z"},
		{"exact price text", tasks.TypeQuoteFetch, `{"symbol":"X","price":0.000100,"quoted_at":"2025-11-21T14:30:00Z"}`, "0.000100 USD @ 14:30:00Z"},
		{"time shown in UTC", tasks.TypeQuoteFetch, `{"symbol":"GOOG","price":1.5,"quoted_at":"2025-11-21T09:30:05-05:00"}`, "1.5 USD @ 14:30:05Z"},
		{"duplicate", tasks.TypeQuoteFetch, `{"symbol":"GOOG","price":2,"quoted_at":"2025-11-21T14:30:00Z","duplicate":true}`, "2 USD @ 14:30:00Z (duplicate delivery)"},
		{"no price", tasks.TypeQuoteFetch, `{"symbol":"GOOG","quoted_at":"2025-11-21T14:30:00Z"}`, `{"symbol":"GOOG","quoted_at":"2025-11-21T14:30:00Z"}`},
		{"no time", tasks.TypeQuoteFetch, `{"symbol":"GOOG","price":1}`, `{"symbol":"GOOG","price":1}`},
		{"price not a number", tasks.TypeQuoteFetch, `{"symbol":"GOOG","price":"abc","quoted_at":"2025-11-21T14:30:00Z"}`, `{"symbol":"GOOG","price":"abc","quoted_at":"2025-11-21T14:30:00Z"}`},
		{"not JSON", tasks.TypeQuoteFetch, `done`, `done`},
		{"no result", tasks.TypeQuoteFetch, ``, ``},
		{"other type", "email:send", goog, goog},
		{"other result without type", "", `{"sent":true}`, `{"sent":true}`},
		{"not UTF-8", "blob", "\xfe", `"\xfe"`},
	} {
		if got := formatResult(tc.taskType, []byte(tc.result)); got != tc.want {
			t.Errorf("%s: formatResult(%q, %q) = %q, want %q", tc.name, tc.taskType, tc.result, got, tc.want)
		}
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no redis", Config{}},
		{"user without password", Config{Redis: nowhere, User: "ops"}},
		{"password without user", Config{Redis: nowhere, Password: "secret"}},
		{"colon in user", Config{Redis: nowhere, User: "ops:team", Password: "secret"}},
	} {
		h, err := New(tc.cfg)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New = %v, %v; want ErrInvalidConfig", tc.name, h, err)
		}
	}
}

// serve starts the UI for cfg on a test server.
func serve(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		if err := h.Close(); err != nil {
			t.Errorf("close UI: %v", err)
		}
	})
	return srv
}

// answer is what one request got.
type answer struct {
	code   int
	header http.Header
	body   string
}

// do sends a request, without following redirects.
func do(t *testing.T, method, url, user, password string, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: string(body)}
}

func get(t *testing.T, url string) answer { return do(t, http.MethodGet, url, "", "", nil) }

// seeded is a Redis database holding quote-fetch tasks in every state.
type seeded struct {
	redis asynq.RedisConnOpt
	ids   map[string]string // symbol to task ID
}

// seed fills a fresh Redis database: in queue "default" GOOG pending and
// MSFT scheduled; in queue "work", processed by a server that runs until the
// test ends, WIN completed with a result, DEAD archived (SkipRetry), FLAKY
// waiting to retry and SLOW active; in queue "low" a task of another type.
func seed(t *testing.T) seeded {
	t.Helper()
	opt := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })

	s := seeded{redis: opt, ids: map[string]string{}}
	for _, e := range []struct {
		symbol string
		opts   []asynq.Option
	}{
		{"GOOG", nil},
		{"MSFT", []asynq.Option{asynq.ProcessIn(time.Hour)}},
		{"WIN", []asynq.Option{asynq.Queue("work")}},
		{"DEAD", []asynq.Option{asynq.Queue("work")}},
		{"FLAKY", []asynq.Option{asynq.Queue("work")}},
		{"SLOW", []asynq.Option{asynq.Queue("work")}},
	} {
		task, err := tasks.NewQuoteFetchTask(e.symbol, e.opts...)
		if err != nil {
			t.Fatal(err)
		}
		info, err := client.Enqueue(task)
		if err != nil {
			t.Fatalf("enqueue %s: %v", e.symbol, err)
		}
		s.ids[e.symbol] = info.ID
	}
	if _, err := client.Enqueue(asynq.NewTask("email:send", []byte(`{"to":"ops@example.com"}`)), asynq.Queue("low")); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	srv := asynq.NewServer(opt, asynq.Config{
		Queues:          map[string]int{"work": 1},
		Concurrency:     4,
		RetryDelayFunc:  func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:        asynq.ErrorLevel,
		ShutdownTimeout: 5 * time.Second,
	})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		switch tasks.Symbol(task) {
		case "WIN":
			res := tasks.QuoteFetchResult{Symbol: "WIN", Price: "173.25", QuotedAt: time.Date(2025, 11, 21, 14, 30, 0, 0, time.UTC)}
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			_, err = task.ResultWriter().Write(b)
			return err
		case "DEAD":
			return fmt.Errorf("unknown symbol: %w", asynq.SkipRetry)
		case "FLAKY":
			return errors.New("quote API answered 503")
		case "SLOW":
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		return fmt.Errorf("unexpected task %q", task.Payload())
	}))
	if err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { close(release) }) // runs first: lets SLOW finish

	inspector := asynq.NewInspector(opt)
	defer inspector.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// The server reports its active workers with its heartbeat, every
		// five seconds.
		q, err := inspector.GetQueueInfo("work")
		servers, serr := inspector.Servers()
		if err == nil && q.Active == 1 && q.Completed == 1 && q.Archived == 1 && q.Retry == 1 &&
			serr == nil && len(servers) == 1 && len(servers[0].ActiveWorkers) == 1 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks did not reach their states: %+v, %v; servers %+v, %v", q, err, servers, serr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAPI(t *testing.T) {
	t.Parallel()
	s := seed(t)
	srv := serve(t, Config{Redis: s.redis})
	const result = `"result":"173.25 USD @ 14:30:00Z"`

	tests := []struct {
		path string
		want []string
	}{
		{"/api/queues", []string{`"queue":"default"`, `"queue":"work"`, `"queue":"low"`}},
		{"/api/queues/default", []string{`"pending":1,`, `"scheduled":1,`}},
		{"/api/queues/work", []string{`"active":1,`, `"retry":1,`, `"archived":1,`, `"completed":1,`}},
		{"/api/queue_stats", []string{`"work":[`}},
		{"/api/servers", []string{`"task_payload":"SLOW"`, `"queue_priorities":{"work":1}`}},
		{"/api/redis_info", []string{`"redis_version":`}},
		{"/api/scheduler_entries", []string{`"entries":[]`}},
		{"/api/queues/work/groups", []string{`"groups":[]`}},
		{"/api/queues/default/pending_tasks", []string{`"payload":"GOOG"`}},
		{"/api/queues/default/scheduled_tasks", []string{`"payload":"MSFT"`}},
		{"/api/queues/work/active_tasks", []string{`"payload":"SLOW"`}},
		{"/api/queues/work/retry_tasks", []string{`"payload":"FLAKY"`, `"error_message":"quote API answered 503"`}},
		{"/api/queues/work/archived_tasks", []string{`"payload":"DEAD"`, `skip retry`}},
		{"/api/queues/work/completed_tasks", []string{`"payload":"WIN"`, result}},
		{"/api/queues/work/tasks/" + s.ids["WIN"], []string{`"state":"completed"`, `"payload":"WIN"`, result}},
		{"/api/queues/default/tasks/" + s.ids["GOOG"], []string{`"state":"pending"`, `"payload":"GOOG"`}},
		{"/api/queues/low/pending_tasks", []string{`"type":"email:send"`, `"payload":"{\"to\":\"ops@example.com\"}"`}},
	}
	for _, tt := range tests {
		a := get(t, srv.URL+tt.path)
		if a.code != http.StatusOK || a.header.Get("Content-Type") != "application/json" || !json.Valid([]byte(a.body)) {
			t.Errorf("GET %s: %d %q %.300q; want 200 and JSON", tt.path, a.code, a.header.Get("Content-Type"), a.body)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(a.body, w) {
				t.Errorf("GET %s = %.1000s\nwant it to contain %s", tt.path, a.body, w)
			}
		}
	}

	t.Run("read-only", func(t *testing.T) {
		ro := serve(t, Config{Redis: s.redis, ReadOnly: true})
		goog, msft := s.ids["GOOG"], s.ids["MSFT"]
		for _, tc := range []struct {
			method, path string
			want         int
		}{
			{http.MethodGet, "/api/queues/default/pending_tasks", http.StatusOK},
			{http.MethodGet, "/api/queues/default/tasks/" + goog, http.StatusOK},
			{http.MethodGet, "/", http.StatusOK},
			{http.MethodDelete, "/api/queues/default/pending_tasks/" + goog, http.StatusMethodNotAllowed},
			{http.MethodDelete, "/api/queues/default/pending_tasks:delete_all", http.StatusMethodNotAllowed},
			{http.MethodPost, "/api/queues/default/scheduled_tasks/" + msft + ":run", http.StatusMethodNotAllowed},
			{http.MethodPost, "/api/queues/work/retry_tasks:run_all", http.StatusMethodNotAllowed},
			{http.MethodPost, "/api/queues/default:pause", http.StatusMethodNotAllowed},
			{http.MethodPost, "/not/an/api/route", http.StatusMethodNotAllowed},
		} {
			if a := do(t, tc.method, ro.URL+tc.path, "", "", nil); a.code != tc.want {
				t.Errorf("read-only %s %s: %d %q, want %d", tc.method, tc.path, a.code, a.body, tc.want)
			}
		}
		if a := get(t, ro.URL+"/"); !strings.Contains(a.body, `window.FLAG_READ_ONLY="true"`) {
			t.Errorf("read-only index does not tell the app: %.500s", a.body)
		}
		a := get(t, srv.URL+"/api/queues/default")
		if !strings.Contains(a.body, `"pending":1,`) || !strings.Contains(a.body, `"scheduled":1,`) || !strings.Contains(a.body, `"paused":false`) {
			t.Errorf("read-only requests changed the queue: %.500s", a.body)
		}

		// The same request without ReadOnly does delete.
		if a := do(t, http.MethodDelete, srv.URL+"/api/queues/default/pending_tasks/"+goog, "", "", nil); a.code != http.StatusNoContent {
			t.Errorf("writable DELETE: %d %q, want 204", a.code, a.body)
		}
		if a := get(t, srv.URL+"/api/queues/default/tasks/"+goog); a.code != http.StatusNotFound {
			t.Errorf("deleted task: %d %q, want 404", a.code, a.body)
		}
	})
}

func TestAssets(t *testing.T) {
	t.Parallel()
	srv := serve(t, Config{Redis: nowhere})

	index := get(t, srv.URL+"/")
	if index.code != http.StatusOK || index.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(index.body, `<div id="root">`) || !strings.Contains(index.body, `window.FLAG_ROOT_PATH=""`) {
		t.Fatalf("GET /: %d %q %.500s", index.code, index.header.Get("Content-Type"), index.body)
	}
	if strings.Contains(index.body, "[[") {
		t.Errorf("GET /: template markers left: %.500s", index.body)
	}
	for _, p := range []string{"/queues/default", "/queues/default/tasks/abc"} {
		if a := get(t, srv.URL+p); a.code != http.StatusOK || a.body != index.body {
			t.Errorf("GET %s: %d, want the index (the app routes it)", p, a.code)
		}
	}
	if a := get(t, srv.URL+"/index.html"); a.code != http.StatusMovedPermanently || a.header.Get("Location") != "/" {
		t.Errorf("GET /index.html: %d Location %q, want a redirect to /", a.code, a.header.Get("Location"))
	}

	// Every file the index links to, and every file of the build manifest.
	var paths []string
	for _, m := range regexp.MustCompile(`(?:src|href)="(/[^/"][^"]*)"`).FindAllStringSubmatch(index.body, -1) {
		paths = append(paths, m[1])
	}
	var manifest struct{ Files map[string]string }
	if a := get(t, srv.URL+"/asset-manifest.json"); json.Unmarshal([]byte(a.body), &manifest) != nil || len(manifest.Files) == 0 {
		t.Fatalf("GET /asset-manifest.json: %d %.300q", a.code, a.body)
	}
	for _, f := range manifest.Files {
		if f = strings.TrimPrefix(f, "/[[.RootPath]]"); f != "/index.html" {
			paths = append(paths, f)
		}
	}
	types := map[string]string{
		".js":   "text/javascript; charset=utf-8",
		".map":  "application/json",
		".svg":  "image/svg+xml",
		".png":  "image/png",
		".ico":  "image/x-icon",
		".json": "application/json",
		".txt":  "text/plain; charset=utf-8",
	}
	if len(paths) < 10 {
		t.Fatalf("found only %d assets: %q", len(paths), paths)
	}
	for _, p := range paths {
		a := get(t, srv.URL+p)
		if want := types[path.Ext(p)]; a.code != http.StatusOK || a.header.Get("Content-Type") != want || len(a.body) == 0 || a.body == index.body {
			t.Errorf("GET %s: %d %q, %d bytes; want 200 %q and the file", p, a.code, a.header.Get("Content-Type"), len(a.body), want)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", p)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	redis := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	const user, password = "ops", "s3cret:with colon"
	open := serve(t, Config{Redis: redis})
	locked := serve(t, Config{Redis: redis, User: user, Password: password})

	tests := []struct {
		name           string
		srv            *httptest.Server
		user, password string
		want           int
	}{
		{"no auth configured", open, "", "", http.StatusOK},
		{"no auth configured, credentials sent", open, "x", "y", http.StatusOK},
		{"no credentials", locked, "", "", http.StatusUnauthorized},
		{"wrong password", locked, user, "s3cret", http.StatusUnauthorized},
		{"wrong user", locked, "admin", password, http.StatusUnauthorized},
		{"password as user", locked, password, user, http.StatusUnauthorized},
		{"right", locked, user, password, http.StatusOK},
	}
	for _, tt := range tests {
		for _, p := range []string{"/", "/api/queues", "/favicon.ico"} {
			a := do(t, http.MethodGet, tt.srv.URL+p, tt.user, tt.password, nil)
			if a.code != tt.want {
				t.Errorf("%s: GET %s = %d, want %d", tt.name, p, a.code, tt.want)
			}
			challenge := a.header.Get("WWW-Authenticate")
			if tt.want == http.StatusUnauthorized && challenge != `Basic realm="tickerq"` {
				t.Errorf("%s: GET %s: WWW-Authenticate %q", tt.name, p, challenge)
			}
			if tt.want == http.StatusOK && challenge != "" {
				t.Errorf("%s: GET %s: WWW-Authenticate %q on success", tt.name, p, challenge)
			}
		}
	}
	if a := do(t, http.MethodGet, locked.URL+"/api/queues", user, password, nil); a.body != "{\"queues\":[]}\n" {
		t.Errorf("GET /api/queues with auth = %q", a.body)
	}
}

// TestLoopbackHostOnly: without a password, a UI on loopback answers only
// requests addressed to localhost, so a DNS-rebinding page that points its
// own name at 127.0.0.1 gets nothing; with a password, any Host is fine.
func TestLoopbackHostOnly(t *testing.T) {
	t.Parallel()
	redis := testenv.RedisClientOpt(t, testenv.RedisURL(t))
	open := serve(t, Config{Redis: redis, Loopback: true})
	locked := serve(t, Config{Redis: redis, Loopback: true, User: "ops", Password: "pw"})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(open.URL, "http://"))
	for _, tc := range []struct {
		srv        *httptest.Server
		host       string
		user, pass string
		want       int
	}{
		{open, "127.0.0.1:" + port, "", "", http.StatusOK},
		{open, "localhost:" + port, "", "", http.StatusOK},
		{open, "LOCALHOST", "", "", http.StatusOK},
		{open, "[::1]:" + port, "", "", http.StatusOK},
		{open, "evil.example:" + port, "", "", http.StatusMisdirectedRequest},
		{open, "127.0.0.1.nip.io:" + port, "", "", http.StatusMisdirectedRequest},
		{open, "192.168.1.5:" + port, "", "", http.StatusMisdirectedRequest},
		{locked, "evil.example:" + port, "ops", "pw", http.StatusOK},
	} {
		for _, path := range []string{"/", "/api/queues"} {
			req, err := http.NewRequest(http.MethodGet, tc.srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s with Host %q (auth %v) = %d, want %d", path, tc.host, tc.user != "", resp.StatusCode, tc.want)
			}
		}
	}
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	srv := serve(t, Config{Redis: nowhere})
	for _, tc := range []struct {
		name   string
		method string
		header map[string]string
		want   int
	}{
		{"cross-site POST", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"cross-site DELETE", http.MethodDelete, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"POST from another origin", http.MethodPost, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site GET", http.MethodGet, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusOK},
	} {
		path := "/api/queues/default:pause"
		if tc.method == http.MethodGet {
			path = "/"
		}
		if a := do(t, tc.method, srv.URL+path, "", "", tc.header); a.code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, a.code, a.body, tc.want)
		}
	}
}
