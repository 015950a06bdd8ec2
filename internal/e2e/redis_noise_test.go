package e2e

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// logLine is the part of a JSON log line these tests read.
type logLine struct {
	Level     string `json:"level"`
	Component string `json:"component"`
	Message   string `json:"message"`
}

// logLines parses the JSON lines of s; a line that is not JSON (the
// program's closing error line) comes back with its text as Message and no
// level.
func logLines(s string) []logLine {
	var out []logLine
	for _, raw := range strings.Split(strings.TrimSpace(s), "\n") {
		var l logLine
		if json.Unmarshal([]byte(raw), &l) != nil {
			l = logLine{Message: raw}
		}
		out = append(out, l)
	}
	return out
}

// refusedURL is raw with its host:port replaced by one that refuses
// connections.
func refusedURL(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = refusedAddr(t)
	return u.String()
}

// refusedAddr is a loopback host:port that refuses connections: one the
// kernel gave and took back.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// A worker that cannot reach Redis at start (connection refused) prints
// its own attempt lines and one give-up line, and nothing of go-redis's
// (which said each failed dial).
func TestWorkerRedisUnreachableAtStartIsQuiet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.run("worker", nil, []string{"REDIS_URL=" + refusedURL(t, e.redis)}, "--connect-timeout", "3s")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", r.code, tail(r.stderr, 2048))
	}
	lines := logLines(r.stderr)
	attempts := 0
	for i, l := range lines {
		switch {
		case i == 0 && l.Message == "starting worker":
		case l.Level == "warn" && l.Message == "redis: not reachable yet, retrying":
			attempts++
		case i == len(lines)-1 && strings.HasPrefix(l.Message, "worker: redis: gave up after"):
		default:
			t.Errorf("stderr line %d is neither the start, an attempt nor the give-up line: %+v", i+1, l)
		}
	}
	if attempts == 0 {
		t.Errorf("no attempt line in %d stderr lines:\n%s", len(lines), r.stderr)
	}
	t.Logf("%d stderr lines, %d of them attempt lines", len(lines), attempts)
}

// A running worker whose Redis goes away says so in one line, however long
// it lasts, and in one more when Redis is back; go-redis's and asynq's
// lines meanwhile are at debug.
func TestWorkerRedisOutageSaidOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	proxy, redisURL := testenv.ProxyURL(t, e.redis)
	p, _ := e.startWorker([]string{"REDIS_URL=" + redisURL, "QUOTE_API_URL=" + quoteURL, "LOG_LEVEL=debug"})

	// since is the log from the line with message msg on (nil before it).
	since := func(msg string) []logLine {
		lines := logLines(p.logs.String())
		for i, l := range lines {
			if l.Message == msg || strings.HasPrefix(l.Message, msg) {
				return lines[i:]
			}
		}
		return nil
	}
	const down, back = "redis: not reachable: ", "redis: reachable again after"
	proxy.SetDown(true)
	// Ten more lines from asynq after the worker said Redis is down (each
	// an operation that failed; asynq has nothing else to say then): the
	// outage has lasted a while.
	testenv.WaitUntil(t, "asynq has logged ten lines after the outage line", time.Minute, func() bool {
		n := 0
		for _, l := range since(down) {
			if l.Component == "asynq" && l.Level != "info" {
				n++
			}
		}
		return n >= 10
	})
	proxy.SetDown(false)
	testenv.WaitUntil(t, "the worker says redis is back", time.Minute, func() bool { return since(back) != nil })

	downs, backs := 0, 0
	for _, l := range since(down) {
		switch {
		case strings.HasPrefix(l.Message, down):
			downs++
		case strings.HasPrefix(l.Message, back):
			backs++
		case backs == 0 && (l.Component == "asynq" || l.Component == "go-redis") && l.Level != "debug":
			t.Errorf("during the outage, a line above debug: %+v", l)
		}
	}
	if downs != 1 || backs != 1 {
		t.Errorf("%d lines say redis is down and %d that it is back, want 1 each", downs, backs)
	}
	for _, l := range logLines(p.logs.String()) {
		if l.Component == "go-redis" && l.Level != "debug" {
			t.Errorf("go-redis line above debug: %+v", l)
		}
	}
	e.readyThenWorks(p, "http://"+e.loggedAddr(p, "admin server listening"))
}
