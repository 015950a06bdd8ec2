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

	"github.com/tickerq/tickerq/internal/testenv"
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
	wantStderrLine(t, r, "BAD$")
	if strings.Contains(r.stderr, "GOOG") || r.stdout != "" {
		t.Errorf("stdout %q, stderr %q: want only BAD$ named, nothing printed", r.stdout, r.stderr)
	}

	r = run(t, url, "GOOG\nx y\n# fine\nBAD$\n", "enqueue", "--file", "-", "msft", "1BAD!", "BAD$")
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
	wantStderrLine(t, r, "invalid symbols: 1BAD!, BAD$, x y")
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
		{"zero max retry", "", []string{"enqueue", "--max-retry", "0", "GOOG"}, "--max-retry"},
		{"timeout zero", "", []string{"enqueue", "--timeout", "0s", "GOOG"}, "--timeout"},
		{"empty queue", "", []string{"enqueue", "--queue", "", "GOOG"}, "--queue"},
		{"queue with space", "", []string{"enqueue", "--queue", "a b", "GOOG"}, "--queue"},
		{"no symbols", "", []string{"enqueue"}, "no symbols"},
		{"only comments", "# none\n\n", []string{"enqueue", "--file", "-"}, "no symbols"},
		{"missing file", "", []string{"enqueue", "--file", "/nonexistent/symbols.txt"}, "/nonexistent/symbols.txt"},
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

func TestRedisDown(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"enqueue", "GOOG"}, {"stats"}, {"wait"}} {
		r := run(t, "redis://127.0.0.1:1/1", "", args...)
		if r.code != 1 {
			t.Errorf("%q: exit %d, want 1", args, r.code)
		}
		wantStderrLine(t, r, "connection refused")
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"enqueue", "--help"}, {"stats", "--help"}, {"wait", "-h"}, {"help", "enqueue"}, {"ui", "--help"}} {
		r := run(t, "redis://127.0.0.1:1/1", "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and usage on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	mustRun(t, url, "", "wait", "--timeout", "5s")

	mustRun(t, url, "", "enqueue", "GOOG", "MSFT")
	r := run(t, url, "", "wait", "--timeout", "200ms")
	if r.code != 1 {
		t.Errorf("wait with pending tasks: exit %d, want 1", r.code)
	}
	wantStderrLine(t, r, "timed out", "default (pending 2")

	mustRun(t, url, "", "wait", "--queue", "critical", "--timeout", "5s")
	r = run(t, url, "", "wait", "--queue", "critical", "--queue", "default", "--timeout", "200ms", "--poll", "20ms")
	if r.code != 1 {
		t.Errorf("wait on critical and default: exit %d, want 1", r.code)
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
