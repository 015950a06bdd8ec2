package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/internal/testenv"
)

// bin is where TestMain built the three programs.
var bin string

func TestMain(m *testing.M) {
	// Built without the race detector: these tests measure wall time, and the
	// packages' own tests already run under -race.
	dir, err := testenv.BuildPrograms()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: its own database, role and Redis DB.
type env struct {
	t     *testing.T
	db    *testenv.Database
	redis string
	vars  []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, db: testenv.NewDatabase(t), redis: testenv.RedisURL(t)}
	e.vars = []string{
		"REDIS_URL=" + e.redis,
		"DATABASE_URL=" + e.db.URL,
		"DB_ROLE=" + e.db.Role.String(),
		"ADMIN_ADDR=",
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
	}
	return e
}

// environ is the process environment for the programs: the test's variables
// win over anything inherited.
func (e *env) environ(extra ...string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return append(append(out, e.vars...), extra...)
}

// proc is a program running in the background.
type proc struct {
	cmd  *exec.Cmd
	name string
	logs *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs program with args in the background; it is killed when the
// test ends, and its logs are shown if the test failed.
func (e *env) start(program string, extraEnv []string, args ...string) *proc {
	e.t.Helper()
	p := &proc{name: program, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(bin, program), args...)
	p.cmd.Env = e.environ(extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", program, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.kill()
		if e.t.Failed() {
			e.t.Logf("--- %s logs (last 4 KiB) ---\n%s", program, tail(p.logs.String(), 4096))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and returns the exit code, failing after timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// startQuoteserver runs quoteserver on a free port and returns its base URL.
func (e *env) startQuoteserver(args ...string) (string, *proc) {
	e.t.Helper()
	p := e.start("quoteserver", nil, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	return "http://" + e.loggedAddr(p, "quoteserver listening"), p
}

// startWorker runs the worker with its admin server on a port the kernel
// picks, and waits until it is ready.
func (e *env) startWorker(extraEnv []string, args ...string) (*proc, string) {
	e.t.Helper()
	p := e.start("worker", append([]string{"ADMIN_ADDR=127.0.0.1:0"}, extraEnv...), args...)
	admin := e.loggedAddr(p, "admin server listening")
	waitHTTP(e.t, "http://"+admin+"/readyz", 30*time.Second, p)
	return p, admin
}

// loggedAddr waits for p's JSON log line with message msg and returns its
// addr field: programs bind port 0 and log the real address, so no port is
// chosen before it is bound.
func (e *env) loggedAddr(p *proc, msg string) string {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			var ev struct {
				Msg  string `json:"message"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Msg == msg && ev.Addr != "" {
				return ev.Addr
			}
		}
		select {
		case <-p.done:
			e.t.Fatalf("%s exited before logging %q: %v\n%s", p.name, msg, p.err, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatalf("%s did not log %q with its address; logs:\n%s", p.name, msg, p.logs.String())
	return ""
}

func waitHTTP(t *testing.T, url string, timeout time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited early: %v\n%s", p.name, p.err, p.logs.String())
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s within %s\n%s", p.name, url, timeout, p.logs.String())
}

// result of a finished program.
type result struct {
	code           int
	stdout, stderr string
}

// run runs program to completion with stdin.
func (e *env) run(program string, stdin io.Reader, extraEnv []string, args ...string) result {
	e.t.Helper()
	r, err := e.tryRun(10*time.Minute, program, stdin, extraEnv, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// tryRun runs program to completion with stdin, killing it after timeout.
// A non-zero exit is a result; only a program that could not run is an
// error, so goroutines other than the test's can call it.
func (e *env) tryRun(timeout time.Duration, program string, stdin io.Reader, extraEnv []string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, program), args...)
	cmd.Env = e.environ(extraEnv...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		return r, fmt.Errorf("run %s %v: %w", program, args, err)
	}
	return r, nil
}

// producer runs producer and fails the test unless it exits 0.
func (e *env) producer(stdin io.Reader, args ...string) string {
	e.t.Helper()
	r := e.run("producer", stdin, nil, args...)
	if r.code != 0 {
		e.t.Fatalf("producer %v: exit %d\nstderr: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// stats decodes `producer stats --json` by queue name.
func (e *env) stats() map[string]queue.QueueStats {
	e.t.Helper()
	var list []queue.QueueStats
	out := e.producer(nil, "stats", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("stats --json: %v\n%s", err, out)
	}
	m := map[string]queue.QueueStats{}
	for _, q := range list {
		m[q.Queue] = q
	}
	return m
}

// enqueueFile enqueues symbols through `producer enqueue --file -` and
// returns the task ids.
func (e *env) enqueueFile(symbols []string, args ...string) []string {
	e.t.Helper()
	in := strings.NewReader(strings.Join(symbols, "\n") + "\n")
	out := e.producer(in, append([]string{"enqueue", "--file", "-"}, args...)...)
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		id, _, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			e.t.Fatalf("enqueue output line %q is not ID<TAB>SYMBOL<TAB>QUEUE", sc.Text())
		}
		ids = append(ids, id)
	}
	if len(ids) != len(symbols) {
		e.t.Fatalf("enqueue printed %d lines for %d symbols", len(ids), len(symbols))
	}
	return ids
}

func symbols(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return s
}

// rows counts stock_prices rows and distinct task ids.
func (e *env) rows() (rows, distinct int) {
	e.t.Helper()
	conn := e.db.Conn(e.t)
	if err := conn.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT task_id) FROM stock_prices").Scan(&rows, &distinct); err != nil {
		e.t.Fatal(err)
	}
	return rows, distinct
}

// rowsPerTask counts the stock_prices rows of each task id.
func (e *env) rowsPerTask() map[string]int {
	e.t.Helper()
	rs, err := e.db.Conn(e.t).Query(context.Background(), "SELECT task_id, count(*) FROM stock_prices GROUP BY task_id")
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for rs.Next() {
		var id string
		var n int
		if err := rs.Scan(&id, &n); err != nil {
			e.t.Fatal(err)
		}
		out[id] = n
	}
	if err := rs.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// taskStates reads the asynq state of each task id of the default queue
// on the Redis at addr ("" for a task that is not there).
func taskStates(t *testing.T, addr string, ids []string) map[string]string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refs := make([]queue.TaskRef, len(ids))
	for i, id := range ids {
		refs[i] = queue.TaskRef{ID: id, Queue: "default"}
	}
	states, err := queue.TaskStates(ctx, rdb, refs)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(ids))
	for i, id := range ids {
		out[id] = states[i]
	}
	return out
}
