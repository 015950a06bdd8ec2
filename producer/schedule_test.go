package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// scheduleFile writes yaml to a schedule file of its own and returns its path.
func scheduleFile(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedule.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const everyYAML = "schedules:\n  - name: fast\n    every: 20s\n    symbols: [goog, MSFT]\n  - name: slow\n    every: 1m\n    symbols: [AAPL]\n    timezone: Asia/Tokyo\n"

func TestScheduleUsageErrors(t *testing.T) {
	t.Parallel()
	cfg := scheduleFile(t, everyYAML)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"schedule"}, "--config: want the schedule file"},
		{[]string{"schedule", "--config", cfg, "--from", "2027-01-01T00:00:00Z"}, "--from: only with --dry-run"},
		{[]string{"schedule", "--config", cfg, "--json"}, "--json: only with --dry-run"},
		{[]string{"schedule", "--config", cfg, "--dry-run", "--from", "tomorrow"}, `--from "tomorrow": want an RFC 3339 time`},
		{[]string{"schedule", "--config", cfg, "--dry-run", "--count", "0"}, "--count 0: want at least 1"},
		{[]string{"schedule", "--config", cfg, "--dry-run", "--metrics-addr", "127.0.0.1:0"}, "--metrics-addr: not with --dry-run"},
		{[]string{"schedule", "--config", cfg, "--metrics-addr", "nope"}, `--metrics-addr "nope": want host:port`},
		{[]string{"schedule", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, "no such file"},
		{[]string{"schedule", "--config", cfg, "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		r := run(t, "redis://127.0.0.1:1/0", "", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("producer %v: exit %d, stderr %q; want 2 and %q", tc.args[1:], r.code, r.stderr, tc.want)
		}
	}
}

func TestScheduleDryRun(t *testing.T) {
	t.Parallel()
	cfg := scheduleFile(t, everyYAML)
	// No Redis listens on port 1: a dry run must not need one.
	r := run(t, "redis://127.0.0.1:1/0", "", "schedule", "--config", cfg, "--dry-run", "--from", "2027-01-15T09:00:00Z", "--count", "5")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "2027-01-15T09:00:00Z\tfast\t2\n" +
		"2027-01-15T18:00:00+09:00\tslow\t1\n" +
		"2027-01-15T09:00:20Z\tfast\t2\n" +
		"2027-01-15T09:00:40Z\tfast\t2\n" +
		"2027-01-15T09:01:00Z\tfast\t2\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = run(t, "redis://127.0.0.1:1/0", "", "schedule", "--config", cfg, "--dry-run", "--from", "2027-01-15T09:00:10Z", "--count", "1", "--json")
	if want := `{"at":"2027-01-15T09:00:20Z","schedule":"fast","symbols":["GOOG","MSFT"]}` + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("--json: exit %d, stdout %q, want %q (stderr %s)", r.code, r.stdout, want, r.stderr)
	}
}

// logWatcher collects a running producer's stderr lines.
type logWatcher struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (w *logWatcher) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			w.mu.Lock()
			w.lines = append(w.lines, m)
			w.mu.Unlock()
		}
	}
}

// wait returns the first line with message msg, waiting up to timeout.
func (w *logWatcher) wait(t *testing.T, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, m := range w.lines {
			if m["message"] == msg {
				w.mu.Unlock()
				return m
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line %q within %s", msg, timeout)
	return nil
}

// TestScheduleRunSighupMetrics runs the schedule against Redis: it fires,
// reloads on SIGHUP, serves its counters on --metrics-addr and exits 0 on
// SIGTERM.
func TestScheduleRunSighupMetrics(t *testing.T) {
	t.Parallel()
	cfg := scheduleFile(t, "schedules:\n  - name: tick\n    every: 1s\n    symbols: [GOOG, MSFT, AAPL]\n")
	cmd := command(t, testenv.RedisURL(t), []string{"LOG_FORMAT=json"}, "schedule", "--config", cfg, "--metrics-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &logWatcher{}
	read := make(chan struct{})
	go func() {
		w.read(stderr)
		close(read)
	}()

	addr := w.wait(t, "metrics server listening", 10*time.Second)["addr"].(string)
	fired := w.wait(t, "schedule fired", 10*time.Second)
	if fired["schedule"] != "tick" || fired["enqueued"] != 3.0 || fired["already_enqueued"] != 0.0 || fired["skipped"] != 0.0 {
		t.Errorf("firing line %v", fired)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := w.wait(t, "schedule file reloaded", 10*time.Second); m["trigger"] != "sighup" {
		t.Errorf("reload line %v: want trigger sighup", m)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tickerq_schedule_enqueued_total{schedule="tick"} `, `tickerq_schedule_already_enqueued_total{schedule="tick"} 0`, `tickerq_schedule_skipped_total{schedule="tick"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-read
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", err)
	}
}

// TestScheduleExampleParses keeps examples/schedule.yaml, which the README
// points people at, valid: a dry run from a Wednesday before Thanksgiving
// shows each of its entries at its own slots, and no market firing after
// the session's close.
func TestScheduleExampleParses(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join("..", "examples", "schedule.yaml")
	r := run(t, "redis://127.0.0.1:1/0", "", "schedule", "--config", cfg, "--dry-run",
		"--from", "2026-11-25T15:59:00-05:00", "--count", "4")
	want := "2026-11-25T15:59:00-05:00\tus-minute\t10\n" +
		"2026-11-25T15:59:00-05:00\tmegacaps-30s\t3\n" +
		"2026-11-25T15:59:30-05:00\tmegacaps-30s\t3\n" +
		"2026-11-25T16:00:00-05:00\tmegacaps-30s\t3\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
}

// TestScheduleRefusesBadEntries: a file whose entry can never fire inside
// its market's session, or has an unknown or mistyped field, exits 2
// naming the entry and the field, with and without --dry-run.
func TestScheduleRefusesBadEntries(t *testing.T) {
	t.Parallel()
	fast := "schedules:\n  - name: fast\n    every: 2s\n    symbols: [AAPL]\n"
	tests := []struct{ yaml, want string }{
		{fast + "  - name: evening\n    cron: \"0 17 * * *\"\n    market: XNYS\n    timezone: America/New_York\n    symbols: [MSFT]\n",
			`invalid schedule: schedule "evening": cron: "0 17 * * *" never falls inside an XNYS session`},
		{fast + "  - name: e1\n    every: 1s\n    bogus: 3\n    symbols: [MSFT]\n", `invalid schedule: schedule "e1": bogus: unknown field (line 7)`},
		{"bogus: 1\n" + fast, `invalid schedule: bogus: unknown field (line 1)`},
		{fast + "  - name: e1\n    every: [1]\n    symbols: [MSFT]\n", `invalid schedule: schedule "e1": every: want a single value, not a list or mapping (line 6)`},
	}
	for _, tc := range tests {
		cfg := scheduleFile(t, tc.yaml)
		for _, args := range [][]string{{"--dry-run"}, nil} {
			r := run(t, "redis://127.0.0.1:1/0", "", append([]string{"schedule", "--config", cfg}, args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, cfg+": "+tc.want) {
				t.Errorf("schedule %v on\n%s: exit %d, stderr %q; want 2 and %q", args, tc.yaml, r.code, r.stderr, tc.want)
			}
		}
	}
}

// TestScheduleDryRunDST: a fixed-time cron in America/New_York fires once
// on the night clocks fall back, and inside the skipped spring-forward
// hour fires at 03:00 EDT.
func TestScheduleDryRunDST(t *testing.T) {
	t.Parallel()
	tests := []struct{ cron, from, want string }{
		{"30 1 * * *", "2026-10-31T12:00:00-04:00", "2026-11-01T01:30:00-04:00\tnight\t1\n2026-11-02T01:30:00-05:00\tnight\t1\n"},
		{"30 2 * * *", "2026-03-07T12:00:00-05:00", "2026-03-08T03:00:00-04:00\tnight\t1\n2026-03-09T02:30:00-04:00\tnight\t1\n"},
	}
	for _, tc := range tests {
		cfg := scheduleFile(t, "timezone: America/New_York\nschedules:\n  - name: night\n    cron: \""+tc.cron+"\"\n    symbols: [AAPL]\n")
		r := run(t, "redis://127.0.0.1:1/0", "", "schedule", "--config", cfg, "--dry-run", "--from", tc.from, "--count", "2")
		if r.code != 0 || r.stdout != tc.want {
			t.Errorf("cron %q from %s: exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", tc.cron, tc.from, r.code, r.stdout, tc.want, r.stderr)
		}
	}
}

// TestScheduleDryRunCatchUp: --dry-run tells on stderr which slot before
// --from a start then would fire too (within its misfire_grace), and says
// nothing of a slot past it; stdout stays the firings from --from.
func TestScheduleDryRunCatchUp(t *testing.T) {
	t.Parallel()
	const entry = "  - name: london-close\n    cron: \"0 17 * * 1-5\"\n    timezone: Europe/London\n    symbols: [BP, SHEL, HSBA]\n"
	cfg := scheduleFile(t, "schedules:\n"+entry)
	graced := scheduleFile(t, "misfire_grace: 24h\nschedules:\n"+entry)
	const friday = "2026-12-04T17:00:00Z\tlondon-close\t3\n"
	tests := []struct {
		name, cfg, from, stdout, stderr string
	}{
		{"30s after the slot", cfg, "2026-12-03T17:00:30Z", friday,
			"producer: a start at 2026-12-03T17:00:30Z would also fire london-close's slot 2026-12-03T17:00:00Z (30s late; misfire_grace 1m0s)\n"},
		{"21.6h after the slot", cfg, "2026-12-04T14:37:00Z", friday, ""},
		{"21.6h after, grace 24h", graced, "2026-12-04T14:37:00Z", friday,
			"producer: a start at 2026-12-04T14:37:00Z would also fire london-close's slot 2026-12-03T17:00:00Z (21h37m0s late; misfire_grace 24h0m0s)\n"},
		{"on the slot", cfg, "2026-12-04T17:00:00Z", friday, ""},
	}
	for _, tc := range tests {
		r := run(t, "redis://127.0.0.1:1/0", "", "schedule", "--config", tc.cfg, "--dry-run", "--from", tc.from, "--count", "1")
		if r.code != 0 || r.stdout != tc.stdout || r.stderr != tc.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0, %q, %q", tc.name, r.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
		}
	}
}
