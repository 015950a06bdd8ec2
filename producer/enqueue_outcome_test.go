package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

func TestEnqueueManyInvalidSymbols(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	var in strings.Builder
	const n = 5000
	for i := range n {
		fmt.Fprintf(&in, "BAD$%d\n", i)
	}
	fmt.Fprintf(&in, "%s$\n", strings.Repeat("X", 1000))
	r := run(t, redisURL, in.String(), "enqueue", "--file", "-", "GOOG")
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != n+2 {
		t.Fatalf("%d stderr lines, want one per bad symbol (%d) and a closing one", len(lines), n+1)
	}
	for i, l := range lines {
		if len(l) > 300 {
			t.Errorf("stderr line %d is %d bytes, want at most 300", i+1, len(l))
		}
	}
	for _, want := range []string{`"BAD$0"` + "\n", `"BAD$4999"` + "\n", `"` + strings.Repeat("X", 40) + `"... (1001 bytes)` + "\n"} {
		if !strings.Contains(r.stderr, "\nproducer: invalid symbol "+want) && !strings.HasPrefix(r.stderr, "producer: invalid symbol "+want) {
			t.Errorf("stderr does not name %q on a line of its own", want)
		}
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, fmt.Sprintf("%d invalid symbols", n+1)) || !strings.Contains(last, "nothing enqueued") || !strings.Contains(last, tasks.SymbolRule) {
		t.Errorf("closing line %q, want the count, the rule and that nothing was enqueued", last)
	}
	wantNothingEnqueued(t, redisURL)
}

func TestEnqueueIDPrefixUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"space", []string{"--id-prefix", "a b", "GOOG"}, "--id-prefix"},
		{"empty", []string{"--id-prefix", "", "GOOG"}, "--id-prefix"},
		{"scheduler's", []string{"--id-prefix", "sched:x", "GOOG"}, "sched:"},
		{"failed file in a missing directory", []string{"--failed-file", "/nonexistent/dir/f", "GOOG"}, "--failed-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, "redis://127.0.0.1:1/1", "", append([]string{"enqueue"}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
			}
			wantStderrLine(t, r, tt.want)
		})
	}
}

// TestEnqueueConnectionLost cuts the producer's connection to Redis in the
// middle of an enqueue with --failed-file and --id-prefix, then re-runs the
// failed file: in the end every symbol has exactly one task.
func TestEnqueueConnectionLost(t *testing.T) {
	t.Parallel()
	const n = 30000
	redisURL := testenv.RedisURL(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.Addr()

	dir := t.TempDir()
	in, left := filepath.Join(dir, "in.txt"), filepath.Join(dir, "left.txt")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "S%05d\n", i)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	pending := func() int64 {
		t.Helper()
		l, err := rc.LLen(t.Context(), "asynq:{default}:pending").Result()
		if err != nil {
			t.Fatalf("LLEN: %v", err)
		}
		return l
	}

	cut := make(chan struct{})
	go func() {
		defer close(cut)
		for deadline := time.Now().Add(30 * time.Second); pending() < 3000 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		proxy.SetDown(true)
	}()
	r := run(t, viaProxy.String(), "", "enqueue", "--file", in, "--id-prefix", "cut", "--failed-file", left)
	<-cut
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	wantStderrLine(t, r, "symbols not enqueued", "listed in "+left)

	enqueued := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	data, err := os.ReadFile(left)
	if err != nil {
		t.Fatal(err)
	}
	failed, unknown, inUnknown := 0, 0, false
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			inUnknown = true
			continue
		}
		seen[l] = true
		exists := rc.Exists(t.Context(), "asynq:{default}:t:cut:"+l).Val() == 1
		switch {
		case inUnknown:
			unknown++
		case exists:
			t.Errorf("%s is listed as failed but is in Redis", l)
		default:
			failed++
		}
	}
	for _, l := range enqueued {
		f := strings.Split(l, "\t")
		if len(f) != 3 || seen[f[1]] {
			t.Fatalf("stdout line %q: want ID, SYMBOL, QUEUE of a symbol not in the failed file", l)
		}
		seen[f[1]] = true
		if rc.Exists(t.Context(), "asynq:{default}:t:"+f[0]).Val() != 1 {
			t.Errorf("%s is reported enqueued but not in Redis", l)
		}
	}
	if len(seen) != n || failed == 0 {
		t.Fatalf("%d symbols accounted for (%d enqueued, %d failed, %d unknown), want all %d with some failed", len(seen), len(enqueued), failed, unknown, n)
	}
	t.Logf("%d enqueued, %d failed, %d unknown", len(enqueued), failed, unknown)

	// The re-run, with Redis reachable again: the unknown ones in Redis are
	// already enqueued, the rest go in, and none twice.
	r = run(t, redisURL, "", "enqueue", "--file", left, "--id-prefix", "cut")
	if r.code != 0 {
		t.Fatalf("re-run: exit %d, stderr %q", r.code, r.stderr)
	}
	again := strings.Count(r.stdout, "\n")
	already := strings.Count(r.stderr, "producer: already enqueued: ")
	if again+already != failed+unknown || pending() != n {
		t.Errorf("re-run: %d enqueued + %d already enqueued, want %d; %d pending, want %d", again, already, failed+unknown, pending(), n)
	}
}

// brokenWriter fails every write, as a closed stdout does.
type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestPrintFailedFileFirst: when stdout cannot be written, the symbols not
// enqueued still reach --failed-file.
func TestPrintFailedFileFirst(t *testing.T) {
	t.Parallel()
	left, err := os.Create(filepath.Join(t.TempDir(), "left.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer left.Close()
	results := []queue.Result{
		{ID: "a", Symbol: "GOOG", Queue: "default", Outcome: queue.Enqueued},
		{Symbol: "MSFT", Queue: "default", Outcome: queue.Failed, Err: errors.New("boom")},
	}
	f := &enqueueFlags{json: true, failedFile: left.Name()}
	if err := f.print(brokenWriter{}, io.Discard, left, results); err == nil || !strings.Contains(err.Error(), "write output") {
		t.Errorf("print to a broken stdout: %v, want a write error", err)
	}
	if data, err := os.ReadFile(left.Name()); err != nil || string(data) != "MSFT\n" {
		t.Errorf("failed file = %q (%v), want MSFT", data, err)
	}
}
