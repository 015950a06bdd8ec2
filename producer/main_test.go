package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// binary is the producer built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := testenv.BuildPrograms("github.com/tickerq/tickerq/producer")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "producer")
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the producer with REDIS_URL=redisURL and stdin, and returns its output.
func run(t *testing.T, redisURL, stdin string, args ...string) result {
	t.Helper()
	return runEnv(t, redisURL, nil, stdin, args...)
}

// command prepares the producer with REDIS_URL=redisURL and the variables
// of env (NAME=value), but none of LOG_* and UI_* from the test's own
// environment.
func command(t *testing.T, redisURL string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "LOG_") && !strings.HasPrefix(kv, "UI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "REDIS_URL="+redisURL)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runEnv is run with more variables in the environment.
func runEnv(t *testing.T, redisURL string, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := command(t, redisURL, env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run producer %q: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// mustRun runs the producer and fails the test unless it exits 0.
func mustRun(t *testing.T, redisURL, stdin string, args ...string) string {
	t.Helper()
	r := run(t, redisURL, stdin, args...)
	if r.code != 0 {
		t.Fatalf("producer %q: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

// wantStderrLine checks that stderr is one "producer: ..." line containing each of want.
func wantStderrLine(t *testing.T, r result, want ...string) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "producer: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line starting with \"producer: \"", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr = %q, want it to contain %q", r.stderr, w)
		}
	}
}

// wantNothingEnqueued checks that the database holds no queue.
func wantNothingEnqueued(t *testing.T, redisURL string) {
	t.Helper()
	if out := mustRun(t, redisURL, "", "stats", "--json"); out != "[]\n" {
		t.Errorf("stats --json = %q, want \"[]\\n\"", out)
	}
}

// jsonLine mirrors one line of enqueue --json.
type jsonLine struct {
	ID     string `json:"id"`
	Symbol string `json:"symbol"`
	Queue  string `json:"queue"`
}

func TestEnqueueInvalidSymbolsEnqueuesNothing(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)

	r := run(t, url, "", "enqueue", "BAD$", "GOOG")
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	wantStderrLine(t, r, `invalid symbol "BAD$": `+tasks.SymbolRule)
	if strings.Contains(r.stderr, "GOOG") || r.stdout != "" {
		t.Errorf("stdout %q, stderr %q: want only BAD$ named, nothing printed", r.stdout, r.stderr)
	}

	r = run(t, url, "GOOG\nx y\n# fine\nBAD$\n", "enqueue", "--file", "-", "msft", "1BAD!", "BAD$")
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	wantStderrLine(t, r, `invalid symbols "1BAD!", "BAD$", "x y": `+tasks.SymbolRule)

	r = run(t, url, "", "enqueue", "AA PL")
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	wantStderrLine(t, r, `invalid symbol "AA PL": want 1-15 characters of A-Z, 0-9, '.' and '-'`)
	wantNothingEnqueued(t, url)
}

func TestEnqueueJSON(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	out := mustRun(t, url, "", "enqueue", "GOOG", "msft", "--json")

	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout = %q, want 2 lines", out)
	}
	ids := map[string]bool{}
	for i, want := range []string{"GOOG", "MSFT"} {
		var got jsonLine
		dec := json.NewDecoder(strings.NewReader(lines[i]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d %q: %v", i, lines[i], err)
		}
		if got.ID == "" || got.Symbol != want || got.Queue != "default" {
			t.Errorf("line %d = %+v, want an id, symbol %s, queue default", i, got, want)
		}
		ids[got.ID] = true
	}
	if len(ids) != 2 {
		t.Errorf("ids not distinct: %q", out)
	}
	if out := mustRun(t, url, "", "stats", "--json"); !strings.Contains(out, `{"queue":"default","pending":2,`) {
		t.Errorf("stats --json = %q, want 2 pending in default", out)
	}
}

func TestEnqueueText(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	file := filepath.Join(t.TempDir(), "symbols.txt")
	if err := os.WriteFile(file, []byte("# list\r\nrds-a\r\n\r\n  nvda  \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string // symbol and queue per line
	}{
		{"args", "", []string{"enqueue", "goog"}, []string{"GOOG\tdefault"}},
		{"stdin after args", "aapl\n\n# skip\nbrk.b\n", []string{"enqueue", "--queue", "low", "TSLA", "--file", "-"}, []string{"TSLA\tlow", "AAPL\tlow", "BRK.B\tlow"}},
		{"file", "", []string{"enqueue", "--file", file, "--in", "1h", "--max-retry", "3", "--timeout", "5s"}, []string{"RDS-A\tdefault", "NVDA\tdefault"}},
		{"at", "", []string{"enqueue", "--at", "2099-01-02T15:04:05Z", "IBM"}, []string{"IBM\tdefault"}},
	}
	for _, tt := range tests {
		out := mustRun(t, url, tt.stdin, tt.args...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(tt.want) {
			t.Errorf("%s: stdout = %q, want %d lines", tt.name, out, len(tt.want))
			continue
		}
		for i, line := range lines {
			id, rest, _ := strings.Cut(line, "\t")
			if id == "" || rest != tt.want[i] {
				t.Errorf("%s: line %d = %q, want ID<TAB>%s", tt.name, i, line, tt.want[i])
			}
		}
	}

	out := mustRun(t, url, "", "stats")
	want := []string{
		"QUEUE    PENDING  ACTIVE  SCHEDULED  RETRY  ARCHIVED  COMPLETED  PROCESSED  FAILED",
		"default  1        0       3          0      0         0          0          0",
		"low      3        0       0          0      0         0          0          0",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stats =\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
}

func TestEnqueueUnique(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	r := run(t, url, "", "enqueue", "--unique", "1m", "GOOG", "goog", "MSFT")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("exit %d, stdout %q: want 0 and 2 tasks", r.code, r.stdout)
	}
	r.stderr = withoutUnservedWarning(r.stderr) // no worker runs here
	wantStderrLine(t, r, "skipped GOOG")
	if out := mustRun(t, url, "", "stats", "--json"); !strings.Contains(out, `"pending":2,`) {
		t.Errorf("stats --json = %q, want 2 pending", out)
	}
}

// TestEnqueueNoRetries: --max-retry 0 is taken and rides with the task.
func TestEnqueueNoRetries(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	mustRun(t, url, "", "enqueue", "--max-retry", "0", "GOOG")
	out := mustRun(t, url, "", "tasks", "list", "--state", "pending", "--json")
	if !strings.Contains(out, `"symbol":"GOOG"`) || !strings.Contains(out, `"max_retry":0`) {
		t.Errorf("tasks list --json = %q, want GOOG with max_retry 0", out)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	long := strings.Repeat("A", 2000) + "\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"in with at", "", []string{"enqueue", "--in", "1m", "--at", "2030-01-02T15:04:05Z", "GOOG"}, "--in and --at"},
		{"in zero", "", []string{"enqueue", "--in", "0s", "GOOG"}, "--in"},
		{"bad duration", "", []string{"enqueue", "--in", "soon", "GOOG"}, "--in"},
		{"bad at", "", []string{"enqueue", "--at", "tomorrow", "GOOG"}, "--at"},
		{"unique under 1s", "", []string{"enqueue", "--unique", "500ms", "GOOG"}, "--unique"},
		{"negative max retry", "", []string{"enqueue", "--max-retry", "-1", "GOOG"}, "--max-retry"},
		{"timeout zero", "", []string{"enqueue", "--timeout", "0s", "GOOG"}, "--timeout"},
		{"empty queue", "", []string{"enqueue", "--queue", "", "GOOG"}, "--queue"},
		{"queue with space", "", []string{"enqueue", "--queue", "a b", "GOOG"}, "--queue"},
		{"no symbols", "", []string{"enqueue"}, "no symbols"},
		{"only comments", "# none\n\n", []string{"enqueue", "--file", "-"}, "no symbols"},
		{"missing file", "", []string{"enqueue", "--file", "/nonexistent/symbols.txt"}, "--file /nonexistent/symbols.txt: no such file or directory"},
		{"file is a directory", "", []string{"enqueue", "--file", os.TempDir()}, "--file " + os.TempDir() + ": is a directory; want a file"},
		{"missing task list", "", []string{"wait", "--tasks", "/nonexistent/enqueued.txt"}, "--tasks /nonexistent/enqueued.txt: no such file or directory"},
		{"task list is a directory", "", []string{"wait", "--tasks", os.TempDir()}, "--tasks " + os.TempDir() + ": is a directory; want a file"},
		{"line too long", "GOOG\n" + long, []string{"enqueue", "--file", "-"}, "line 2"},
		{"unknown flag", "", []string{"enqueue", "--bogus", "GOOG"}, "--bogus"},
		{"unknown command", "", []string{"frobnicate"}, "frobnicate"},
		{"no command", "", nil, "missing command"},
		{"stats argument", "", []string{"stats", "extra"}, "extra"},
		{"wait bad timeout", "", []string{"wait", "--timeout", "later"}, "--timeout"},
		{"wait negative timeout", "", []string{"wait", "--timeout", "-1s"}, "--timeout"},
		{"bad redis url flag", "", []string{"--redis-url", "http://x", "stats"}, "--redis-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, url, tt.stdin, tt.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
			}
			wantStderrLine(t, r, tt.want)
		})
	}

	r := run(t, "redis://127.0.0.1:6379/notanumber", "", "enqueue", "GOOG")
	if r.code != 2 {
		t.Errorf("bad REDIS_URL: exit %d, want 2", r.code)
	}
	wantStderrLine(t, r, "REDIS_URL")

	r = run(t, "redis://user:hunter2@127.0.0.1:6379/x", "", "stats")
	if r.code != 2 || strings.Contains(r.stderr, "hunter2") {
		t.Errorf("REDIS_URL with a password: exit %d, stderr %q; want 2 and the password hidden", r.code, r.stderr)
	}
	wantNothingEnqueued(t, url)
}

func TestRedisURLFlagOverridesEnv(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	mustRun(t, "redis://127.0.0.1:6379/notanumber", "", "--redis-url", url, "enqueue", "GOOG")
	if out := mustRun(t, url, "", "stats", "--json"); !strings.Contains(out, `"pending":1,`) {
		t.Errorf("stats --json = %q, want the task enqueued through --redis-url", out)
	}
}

// TestRedisDown: every command that talks to Redis says in one line that
// it cannot be reached, where, and why, without the URL's password; enqueue
// adds what it did not enqueue.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	const down = "redis://:s3cret@127.0.0.1:1/1"
	const line = "producer: redis at 127.0.0.1:1 is unreachable: dial tcp 127.0.0.1:1: connect: connection refused"
	for _, tt := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"stats"}},
		{"", []string{"wait"}},
		{"x\tGOOG\tdefault\n", []string{"wait", "--tasks", "-", "--timeout", "5s"}},
		{"", []string{"tasks", "list", "--state", "archived"}},
		{"", []string{"tasks", "retry", "--all-archived"}},
		{"", []string{"tasks", "delete", "--state", "archived", "x"}},
		{"", []string{"tasks", "cancel", "x"}},
		{"", []string{"pause", "low"}},
		{"", []string{"unpause", "low"}},
		{"", []string{"queue", "list"}},
		{"", []string{"queue", "delete", "low", "--force"}},
	} {
		r := run(t, down, tt.stdin, tt.args...)
		if r.code != 1 || r.stderr != line+"\n" {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tt.args, r.code, r.stderr, line)
		}
	}

	r := run(t, down, "", "enqueue", "GOOG", "MSFT")
	if r.code != 1 {
		t.Errorf("enqueue: exit %d, want 1", r.code)
	}
	want := []string{
		"producer: not enqueued: GOOG: not attempted: dial tcp 127.0.0.1:1: connect: connection refused",
		"producer: not enqueued: MSFT: not attempted: dial tcp 127.0.0.1:1: connect: connection refused",
		line + "; 2 of 2 symbols not enqueued",
	}
	got := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(got) != len(want) || strings.Contains(r.stderr, "s3cret") {
		t.Fatalf("enqueue: stderr %q, want %d lines without the password", r.stderr, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("enqueue: stderr line %d = %q, want it to start %q", i+1, got[i], want[i])
		}
	}
}

// TestExplainKeepsTheAccount: when Redis could not be reached, explain
// says so first, with the cause said once, and keeps what the command said
// of its own; words that only led up to the cause give way; the password
// of the Redis URL never shows.
func TestExplainKeepsTheAccount(t *testing.T) {
	t.Parallel()
	const raw = "redis://:s3cret@127.0.0.1:1/1"
	opt, err := config.ParseRedisURL(config.EnvRedisURL, raw)
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{loaded: &env{redis: opt, redact: config.NewRedactor("", raw)}}
	conn, dial := net.Dial("tcp", "127.0.0.1:1") // nothing listens on port 1
	if dial == nil {
		conn.Close()
		t.Fatal("dial 127.0.0.1:1 succeeded, want it refused")
	}
	const down = "redis at 127.0.0.1:1 is unreachable: dial tcp 127.0.0.1:1: connect: connection refused"
	const account = "2 of 2 symbols not enqueued: 2 failed (not in redis); each named above"
	for _, tc := range []struct {
		name  string
		err   error
		want  string
		keeps bool // the command's error stays in the chain
	}{
		{"words that lead up to the cause", fmt.Errorf("stats: list queues: %w", dial), down, false},
		{"an account that wraps the cause", &notEnqueuedError{msg: account, cause: dial}, down + "; " + account, true},
		{"an account with the password", &notEnqueuedError{msg: "not enqueued to " + raw, cause: dial},
			down + "; not enqueued to " + config.RedactURL(raw), true},
		{"not about the connection", errors.New("queue low holds 1 task (pending 1): not deleted"),
			"queue low holds 1 task (pending 1): not deleted", true},
	} {
		got := g.explain(t.Context(), tc.err)
		if got.Error() != tc.want || strings.Contains(got.Error(), "s3cret") || errors.Is(got, tc.err) != tc.keeps {
			t.Errorf("%s: explain = %q (wraps the command's error: %v), want %q (%v)", tc.name, got, errors.Is(got, tc.err), tc.want, tc.keeps)
		}
	}
}

// TestRedisDownFailedFile is the documented re-run after Redis could not
// be reached at all: every symbol is in --failed-file, and --file takes it.
func TestRedisDownFailedFile(t *testing.T) {
	t.Parallel()
	left := filepath.Join(t.TempDir(), "left.txt")
	r := run(t, "redis://127.0.0.1:1/1", "", "enqueue", "--failed-file", left, "IBM", "msft")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if want := "producer: redis at 127.0.0.1:1 is unreachable: dial tcp 127.0.0.1:1: connect: connection refused; " +
		"2 of 2 symbols not enqueued: 2 failed (not in redis); listed in " + left + "\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	data, err := os.ReadFile(left)
	if err != nil || string(data) != "IBM\nMSFT\n" {
		t.Fatalf("failed file = %q (%v), want IBM and MSFT, one a line", data, err)
	}

	url := testenv.RedisURL(t)
	out := mustRun(t, url, "", "enqueue", "--file", left)
	if got := ids(out); len(got) != 2 || !strings.Contains(out, "\tIBM\tdefault\n") || !strings.Contains(out, "\tMSFT\tdefault\n") {
		t.Errorf("re-run with --file %s: stdout %q, want IBM and MSFT enqueued", left, out)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"enqueue", "--help"}, {"stats", "--help"}, {"wait", "-h"}, {"help", "enqueue"}, {"ui", "--help"},
		{"queue", "--help"}, {"queue", "list", "--help"}, {"queue", "delete", "--help"}} {
		r := run(t, "redis://127.0.0.1:1/1", "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and usage on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
}

// wantWaiting checks that stderr starts with the line in which wait names
// what it waits for, and returns r without it.
func wantWaiting(t *testing.T, r result, line string) result {
	t.Helper()
	first, rest, _ := strings.Cut(r.stderr, "\n")
	if first != line {
		t.Errorf("first stderr line %q, want %q", first, line)
	}
	r.stderr = rest
	return r
}

func TestWait(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	r := run(t, url, "", "wait", "--timeout", "5s")
	wantCode(t, r, 0, "wait with no queue")
	wantWaiting(t, r, "producer: waiting up to 5s for every queue (there are none yet)")
	if r.stdout != "0 queues done: there are none\n" {
		t.Errorf("wait with no queue: stdout %q", r.stdout)
	}

	mustRun(t, url, "", "enqueue", "GOOG", "MSFT")
	r = run(t, url, "", "wait", "--timeout", "200ms")
	wantCode(t, r, 1, "wait with pending tasks")
	r = wantWaiting(t, r, "producer: waiting up to 200ms for every queue, now default")
	wantStderrLine(t, r, "timed out", "default (pending 2, active 0, scheduled 0, retry 0; no running worker serves it)")

	r = run(t, url, "", "wait", "--queue", "critical", "--queue", "low", "--queue", "critical")
	wantCode(t, r, 0, "wait on empty queues")
	wantWaiting(t, r, "producer: waiting for queues critical, low")
	if r.stdout != "2 queues done: critical, low\n" {
		t.Errorf("wait on critical and low: stdout %q", r.stdout)
	}
	r = run(t, url, "", "wait", "--queue", "critical", "--queue", "default", "--timeout", "200ms", "--poll", "20ms")
	wantCode(t, r, 1, "wait on critical and default")
	wantWaiting(t, r, "producer: waiting up to 200ms for queues critical, default")

	startWorker(t, url, "default")
	r = run(t, url, "x\tGOOG\tdefault\n", "wait", "--tasks", "-", "--timeout", "20s")
	wantCode(t, r, 0, "wait for a task not found")
	wantWaiting(t, r, "producer: waiting up to 20s for 1 task in queue default")
	r = run(t, url, "", "wait", "--timeout", "20s")
	wantCode(t, r, 0, "wait with a worker")
	wantWaiting(t, r, "producer: waiting up to 20s for every queue, now default")
	if r.stdout != "1 queue done: default\n" {
		t.Errorf("wait with a worker: stdout %q", r.stdout)
	}
}

// uiProc is a running `producer ui`.
type uiProc struct {
	cmd  *exec.Cmd
	base string        // http://host:port to reach it
	done chan struct{} // closed once stderr is read to its end

	mu     sync.Mutex
	stderr strings.Builder
}

// startUI starts `producer ui args...` and waits until it logs that it
// listens.
func startUI(t *testing.T, redisURL string, env []string, args ...string) *uiProc {
	t.Helper()
	cmd := command(t, redisURL, env, append([]string{"ui"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start producer ui: %v", err)
	}
	p := &uiProc{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() { // when the test failed before stop
		_ = cmd.Process.Kill()
		<-p.done
		_ = cmd.Wait()
	})
	listening := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var l struct{ Message, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "web UI listening" {
				listening <- l.Addr
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
	}()
	select {
	case addr := <-listening:
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("producer ui logged address %q: %v", addr, err)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		p.base = "http://" + net.JoinHostPort(host, port)
	case <-p.done:
		t.Fatalf("producer ui %q exited before listening:\n%s", args, p.logs())
	case <-time.After(15 * time.Second):
		t.Fatalf("producer ui %q did not log that it listens within 15s:\n%s", args, p.logs())
	}
	return p
}

func (p *uiProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends SIGTERM and returns the exit code and all of stderr.
func (p *uiProc) stop(t *testing.T) (int, string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal producer ui: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("producer ui did not stop within 15s of SIGTERM:\n%s", p.logs())
	}
	_ = p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode(), p.logs()
}

// status sends method path to the UI and returns the status code.
func (p *uiProc) status(t *testing.T, method, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// warnings returns the messages of the warn-level log lines in stderr.
func warnings(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		var l struct{ Level, Message string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "warn" {
			out = append(out, l.Message)
		}
	}
	return out
}

func TestUIServesAndStops(t *testing.T) {
	t.Parallel()
	type check struct {
		method, path string
		want         int
	}
	tests := []struct {
		name      string
		env       []string
		args      []string
		checks    []check
		exposed   bool // want the loud no-authentication warning
		tlsAdvice bool // want the warning about basic auth in clear text
	}{
		{
			name:   "loopback",
			args:   []string{"--addr", "127.0.0.1:0"},
			checks: []check{{"GET", "/", 200}, {"GET", "/api/queues", 200}},
		},
		{
			name:    "all interfaces without auth, explicitly insecure",
			args:    []string{"--addr", "0.0.0.0:0", "--insecure-no-auth"},
			checks:  []check{{"GET", "/", 200}},
			exposed: true,
		},
		{
			name:      "all interfaces with auth",
			env:       []string{"UI_USER=ops", "UI_PASSWORD=secret"},
			args:      []string{"--addr", "0.0.0.0:0"},
			checks:    []check{{"GET", "/", 401}, {"GET", "/api/queues", 401}},
			tlsAdvice: true,
		},
		{
			name:   "read-only from the environment, address too",
			env:    []string{"UI_READ_ONLY=true", "UI_ADDR=127.0.0.1:0"},
			checks: []check{{"GET", "/api/queues", 200}, {"POST", "/api/queues/default:pause", 405}},
		},
		{
			name:   "read-only flag",
			args:   []string{"--addr", "localhost:0", "--read-only"},
			checks: []check{{"GET", "/", 200}, {"DELETE", "/api/queues/default", 405}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A database of the subtest's own: a parent holding one while
			// its subtests wait for a parallel slot would deadlock with
			// tests that hold slots waiting for a database.
			p := startUI(t, testenv.RedisURL(t), tt.env, tt.args...)
			for _, c := range tt.checks {
				if got := p.status(t, c.method, c.path); got != c.want {
					t.Errorf("%s %s = %d, want %d", c.method, c.path, got, c.want)
				}
			}
			code, stderr := p.stop(t)
			if code != 0 || !strings.Contains(stderr, `"message":"web UI stopped"`) {
				t.Errorf("after SIGTERM: exit %d, want 0 and a clean stop; stderr:\n%s", code, stderr)
			}
			var exposed, tlsAdvice bool
			for _, w := range warnings(stderr) {
				if strings.Contains(w, "anyone who can reach port") {
					exposed = true
					for _, want := range []string{"NO AUTHENTICATION", "delete", "retry", "UI_USER", "UI_PASSWORD"} {
						if !strings.Contains(w, want) {
							t.Errorf("warning %q does not say %q", w, want)
						}
					}
				}
				tlsAdvice = tlsAdvice || strings.Contains(w, "clear text")
			}
			if exposed != tt.exposed || tlsAdvice != tt.tlsAdvice {
				t.Errorf("no-auth warning %v (want %v), clear-text warning %v (want %v); stderr:\n%s", exposed, tt.exposed, tlsAdvice, tt.tlsAdvice, stderr)
			}
		})
	}
}

func TestUIUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"user without password", []string{"UI_USER=ops"}, nil, "UI_PASSWORD"},
		{"password without user", []string{"UI_PASSWORD=secret"}, nil, "UI_USER"},
		{"address without port", nil, []string{"--addr", "127.0.0.1"}, "--addr"},
		{"empty address", nil, []string{"--addr", ""}, "--addr"},
		{"port out of range", nil, []string{"--addr", "127.0.0.1:99999"}, "--addr"},
		{"named port", nil, []string{"--addr", "127.0.0.1:http"}, "--addr"},
		{"bad UI_ADDR", []string{"UI_ADDR=nonsense"}, nil, "nonsense"},
		{"bad UI_READ_ONLY", []string{"UI_READ_ONLY=maybe"}, []string{"--addr", "127.0.0.1:0"}, "UI_READ_ONLY"},
		{"argument", nil, []string{"--addr", "127.0.0.1:0", "extra"}, "extra"},
		{"all interfaces without auth", nil, []string{"--addr", "0.0.0.0:0"}, "--insecure-no-auth"},
		{"empty host without auth", nil, []string{"--addr", ":0"}, "UI_PASSWORD"},
		{"IPv6 any without auth", nil, []string{"--addr", "[::]:0"}, "--insecure-no-auth"},
		{"host name without auth", []string{"UI_ADDR=example.com:0"}, nil, "not loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runEnv(t, "redis://127.0.0.1:1/1", tt.env, "", append([]string{"ui"}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
			}
			wantStderrLine(t, r, tt.want)
		})
	}
}

func TestUIAddressTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := run(t, "redis://127.0.0.1:1/1", "", "ui", "--addr", ln.Addr().String())
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (stderr %q)", r.code, r.stderr)
	}
	wantStderrLine(t, r, ln.Addr().String(), "address already in use")
}
