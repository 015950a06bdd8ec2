package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
)

// unservedWarning starts the warning enqueue prints when no running worker
// takes tasks from the queue.
const unservedWarning = "producer: warning: no "

// withoutUnservedWarning drops that warning from stderr, for tests about
// other lines that run without a worker.
func withoutUnservedWarning(stderr string) string {
	var kept []string
	for _, line := range strings.SplitAfter(stderr, "\n") {
		if !strings.HasPrefix(line, unservedWarning) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "")
}

// startWorker runs an asynq server on redisURL serving queues (tasks succeed
// at once) and returns once Redis lists it among the running servers.
func startWorker(t *testing.T, redisURL string, queues ...string) {
	t.Helper()
	opt := testenv.RedisClientOpt(t, redisURL)
	weights := map[string]int{}
	for _, q := range queues {
		weights[q] = 1
	}
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 1, Queues: weights, LogLevel: asynq.FatalLevel})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	inspector := asynq.NewInspector(opt)
	defer inspector.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if servers, err := inspector.Servers(); err == nil && len(servers) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the test's asynq server is not listed after 10 s")
		}
	}
}

// One Redis database, first without a worker, then with one: a test holds
// one database at a time, so it runs on a server with one free database.
func TestEnqueueWarnsWhenNoWorkerServesTheQueue(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	tests := []struct {
		name, queue string
		worker      bool   // a worker serving critical and low is running
		warning     string // "" for none
	}{
		{"no worker at all", "critical", false, "producer: warning: no worker is running: the tasks wait in queue critical until one serves it\n"},
		{"served queue", "critical", true, ""},
		{"queue no worker serves", "nosuch", true, "producer: warning: no running worker serves queue nosuch (1 running serve critical, low): the tasks wait until one does\n"},
	}
	started := false
	for _, tt := range tests {
		if tt.worker && !started {
			startWorker(t, url, "critical", "low")
			started = true
		}
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, url, "", "enqueue", "--queue", tt.queue, "GOOG", "MSFT")
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q; want 0: a warning only", r.code, r.stderr)
			}
			if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[0], "\tGOOG\t"+tt.queue) {
				t.Errorf("stdout %q: want the 2 task lines only", r.stdout)
			}
			if r.stderr != tt.warning {
				t.Errorf("stderr %q, want %q", r.stderr, tt.warning)
			}
		})
	}
}

func TestEnqueueDelayed(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	startWorker(t, url, "default")
	ago := func(d time.Duration) string { return time.Now().Add(-d).UTC().Format(time.RFC3339) }
	in2h := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // substring of the one stderr line
	}{
		{"--in", []string{"--in", "90s", "GOOG", "MSFT"}, 0, "producer: 2 tasks run at "},
		{"--in says how long", []string{"--in", "90s", "GOOG"}, 0, "(in 1m30s)"},
		{"--at in the future", []string{"--at", in2h.UTC().Format(time.RFC3339), "GOOG"}, 0,
			"producer: 1 task runs at " + in2h.Local().Format(time.RFC3339) + " (in "},
		{"--at within the clock skew", []string{"--at", ago(2 * time.Second), "GOOG"}, 0, "(now)"},
		{"--at in the past", []string{"--at", ago(time.Minute), "GOOG"}, 2, "is in the past"},
		{"--at long ago", []string{"--at", "2020-01-01T00:00:00Z", "GOOG"}, 2, "up to 5s back is taken, for clock skew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, url, "", append([]string{"enqueue", "--queue", "default"}, tt.args...)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			wantStderrLine(t, r, tt.stderr)
			if tt.code != 0 && r.stdout != "" {
				t.Errorf("refused, yet stdout %q", r.stdout)
			}
		})
	}
}

func TestEnqueueNoDelayNoNotice(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	startWorker(t, url, "default")
	r := run(t, url, "", "enqueue", "GOOG")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing on stderr", r.code, r.stderr)
	}
}

// TestEnqueueFileNoProgressOffTerminal checks that a --file enqueue whose
// stderr is not a terminal (a pipe here) prints no progress.
func TestEnqueueFileNoProgressOffTerminal(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	var file strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&file, "S%05d\n", i)
	}
	r := run(t, url, file.String(), "enqueue", "--file", "-")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 20000 {
		t.Fatalf("exit %d, %d lines on stdout; want 0 and 20000", r.code, strings.Count(r.stdout, "\n"))
	}
	if got := withoutUnservedWarning(r.stderr); got != "" || strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("stderr %q: want only the no-worker warning", r.stderr)
	}
}
