package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// The scripts behind `make run` and `make stop`, run as the Makefile runs
// them, each copy in a temporary clone of its own: its scripts, its bin/
// (the programs TestMain built) and its run/.
var makeRunScripts = []string{"run.sh", "stop.sh", "proc.sh"}

// makeRunPrograms are the programs run.sh starts, by pid file name.
var makeRunPrograms = map[string]string{"quoteserver": "quoteserver", "worker": "worker", "ui": "producer"}

// clone is a temporary copy of the repository's `make run`.
type clone struct {
	t    *testing.T
	e    *env
	dir  string
	vars []string // QUOTE_API_URL, ADMIN_ADDR, UI_ADDR
	// started holds every pid its run.sh recorded, killed at cleanup if
	// stop.sh left one running.
	started []int
}

// newClone copies the scripts and links the programs into a new directory;
// its make run listens on the three addresses given.
func newClone(t *testing.T, e *env, quote, admin, ui string) *clone {
	t.Helper()
	c := &clone{t: t, e: e, dir: t.TempDir(), vars: []string{
		"QUOTE_API_URL=http://" + quote, "ADMIN_ADDR=" + admin, "UI_ADDR=" + ui,
	}}
	for _, d := range []string{"scripts", "bin", "run"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range makeRunScripts {
		copyFile(t, filepath.Join("..", "..", "scripts", s), filepath.Join(c.dir, "scripts", s))
	}
	for _, p := range makeRunPrograms {
		if err := os.Link(filepath.Join(bin, p), filepath.Join(c.dir, "bin", p)); err != nil {
			copyFile(t, filepath.Join(bin, p), filepath.Join(c.dir, "bin", p))
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "watchlist.txt"), []byte("AAPL\nMSFT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.script("stop.sh", nil)
		for _, pid := range c.started {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasPrefix(exe, c.dir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return c
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// script runs scripts/NAME as the Makefile does (BIN and RUN_DIR absolute)
// and returns its output, stdout and stderr together, and exit code.
func (c *clone) script(name string, extraEnv []string) (string, int) {
	c.t.Helper()
	args := []string{filepath.Join(c.dir, "bin"), filepath.Join(c.dir, "run")}
	if name == "run.sh" {
		args = append(args, filepath.Join(c.dir, "watchlist.txt"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.dir, "scripts", name), args...)
	cmd.WaitDelay = 5 * time.Second // a child left behind keeps the pipe open
	cmd.Dir = c.dir
	// LOG_FORMAT unset, as in a user's shell: the scripts choose it.
	for _, kv := range c.e.environ(append(append([]string{}, c.vars...), extraEnv...)...) {
		if !strings.HasPrefix(kv, "LOG_FORMAT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	case err != nil:
		c.t.Fatalf("%s: %v\n%s", name, err, out.String())
	}
	return out.String(), 0
}

// run runs `make run`'s script and returns its output and exit code.
func (c *clone) run(extraEnv ...string) (string, int) {
	c.t.Helper()
	out, code := c.script("run.sh", extraEnv)
	for _, pid := range c.pids() {
		c.started = append(c.started, pid)
	}
	return out, code
}

// pids reads the pid of each pid file in run/, by program.
func (c *clone) pids() map[string]int {
	c.t.Helper()
	pids := map[string]int{}
	for name := range makeRunPrograms {
		b, err := os.ReadFile(filepath.Join(c.dir, "run", name+".pid"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			c.t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
		if err != nil {
			c.t.Fatalf("%s.pid: %q: %v", name, b, err)
		}
		pids[name] = pid
	}
	return pids
}

// writePidFile writes run/NAME.pid as a decoy: pid, start time, binary.
func (c *clone) writePidFile(name string, pid int, start, exe string) {
	c.t.Helper()
	line := fmt.Sprintf("%d %s %s\n", pid, start, exe)
	if err := os.WriteFile(filepath.Join(c.dir, "run", name+".pid"), []byte(line), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
}

// procStat returns the state and start time (fields 3 and 22 of
// /proc/PID/stat) of a process; ok is false when there is none.
func procStat(pid int) (state, start string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return "", "", false
	}
	return f[0], f[19], true
}

// running reports whether process pid runs (a zombie does not).
func running(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// waitGone waits until none of pids runs.
func waitGone(t *testing.T, pids map[string]int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for name, pid := range pids {
		for running(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d) still runs", name, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func requireRunning(t *testing.T, what string, pids map[string]int) {
	t.Helper()
	if len(pids) != len(makeRunPrograms) {
		t.Fatalf("%s: pid files for %v, want %d", what, pids, len(makeRunPrograms))
	}
	for name, pid := range pids {
		if !running(pid) {
			t.Errorf("%s: %s (pid %d) is not running", what, name, pid)
		}
	}
}

// startDecoy starts a process the test owns, killed at cleanup.
func startDecoy(t *testing.T, path string, args ...string) int {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// TestMakeRunKnowsWhatItStarted runs `make run`'s and `make stop`'s scripts
// from two clones: a taken port is refused by name before anything starts;
// other ports run beside the first; a program that exits at start is named;
// and stop stops its own processes only, whatever its pid files say.
func TestMakeRunKnowsWhatItStarted(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/tools.sh installs it): %v", tool, err)
		}
	}
	e := newEnv(t)
	quoteA, adminA, uiA := freeAddr(t), freeAddr(t), freeAddr(t)
	a := newClone(t, e, quoteA, adminA, uiA)
	out, code := a.run()
	if code != 0 {
		t.Fatalf("first make run: exit %d\n%s", code, out)
	}
	pidsA := a.pids()
	requireRunning(t, "first clone", pidsA)
	for name := range makeRunPrograms {
		b, err := os.ReadFile(filepath.Join(a.dir, "run", name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		if !json.Valid(first) {
			t.Errorf("run/%s.log is not JSON lines (LOG_FORMAT's default): %q", name, first)
		}
	}

	// A port held by a process that answers HTTP as the web UI would.
	held := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer held.Close()
	heldAddr := held.Listener.Addr().String()
	me := strconv.Itoa(os.Getpid())

	refused := []struct {
		name             string
		quote, admin, ui string
		env              []string
		want             []string
		wantCode         int
	}{
		{
			name: "the first clone's ports", quote: quoteA, admin: adminA, ui: uiA,
			want: []string{
				"QUOTE_API_URL: " + quoteA + " is taken by another `make run` (its quoteserver, pid " + strconv.Itoa(pidsA["quoteserver"]),
				"ADMIN_ADDR: " + adminA + " is taken by another `make run` (its worker, pid " + strconv.Itoa(pidsA["worker"]),
				"UI_ADDR: " + uiA + " is taken by another `make run` (its ui, pid " + strconv.Itoa(pidsA["ui"]),
				"nothing started (3 address(es) taken)",
			},
			wantCode: 1,
		},
		{
			name: "a port the test holds", quote: freeAddr(t), admin: freeAddr(t), ui: heldAddr,
			want: []string{
				"UI_ADDR: " + heldAddr + " is taken by pid " + me + ": ",
				"nothing started (1 address(es) taken)",
			},
			wantCode: 1,
		},
		{
			name: "a program that exits at start", quote: freeAddr(t), admin: freeAddr(t), ui: freeAddr(t),
			env:      []string{"LOG_LEVEL=loud"},
			want:     []string{"run: quoteserver (pid ", ") exited with status 2\nrun: last lines of ", "LOG_LEVEL"},
			wantCode: 1,
		},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			b := newClone(t, e, tc.quote, tc.admin, tc.ui)
			out, code := b.run(tc.env...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(out, "tickerq is running") {
				t.Errorf("says it runs")
			}
			if pids := b.pids(); len(pids) != 0 {
				t.Errorf("pid files left: %v", pids)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
			requireRunning(t, "first clone", pidsA)
		})
	}

	// Other ports: a second clone runs beside the first, on the same Redis DB
	// and database (either worker may run the other's tasks).
	quoteB, adminB, uiB := freeAddr(t), freeAddr(t), freeAddr(t)
	b := newClone(t, e, quoteB, adminB, uiB)
	out, code = b.run()
	if code != 0 {
		t.Fatalf("second make run on other ports: exit %d\n%s", code, out)
	}
	for _, w := range []string{"tickerq is running", "web UI:   http://" + uiB + "/", "curl -s http://" + adminB + "/metrics"} {
		if !strings.Contains(out, w) {
			t.Errorf("second make run's output lacks %q:\n%s", w, out)
		}
	}
	pidsB := b.pids()
	requireRunning(t, "second clone", pidsB)
	requireRunning(t, "first clone", pidsA)

	out, code = b.script("stop.sh", nil)
	if code != 0 {
		t.Fatalf("second make stop: exit %d\n%s", code, out)
	}
	waitGone(t, pidsB)
	requireRunning(t, "first clone after the second's stop", pidsA)

	// Without an admin server and at LOG_LEVEL=warn (no info lines in its
	// log), the worker it started is still found ready; and so is the web
	// UI behind basic auth (a password with a quote and a backslash), whose
	// server list tells that the worker is ready.
	c := newClone(t, e, freeAddr(t), "", freeAddr(t))
	out, code = c.run("LOG_LEVEL=warn", "UI_USER=admin", `UI_PASSWORD=pa"ss\word`)
	if code != 0 || !strings.Contains(out, "tickerq is running") {
		t.Fatalf("make run with ADMIN_ADDR=\"\", LOG_LEVEL=warn and UI_USER: exit %d\n%s", code, out)
	}
	pidsC := c.pids()
	requireRunning(t, "clone without an admin server", pidsC)
	if out, code = c.script("stop.sh", nil); code != 0 {
		t.Fatalf("make stop of the clone without an admin server: exit %d\n%s", code, out)
	}
	waitGone(t, pidsC)

	// Stale pid files: a process of the first clone (its exact identity, but
	// not this clone's binary), a pid now running another program, and this
	// clone's own quoteserver binary started at another time than recorded.
	sleeper := startDecoy(t, "sleep", "300")
	_, sleeperStart, _ := procStat(sleeper)
	sameBinary := startDecoy(t, filepath.Join(b.dir, "bin", "quoteserver"), "--addr", "127.0.0.1:0")
	firstWorker, err := os.ReadFile(filepath.Join(a.dir, "run", "worker.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "run", "worker.pid"), firstWorker, 0o644); err != nil {
		t.Fatal(err)
	}
	b.writePidFile("ui", sleeper, sleeperStart, filepath.Join(b.dir, "bin", "producer"))
	b.writePidFile("quoteserver", sameBinary, "1", filepath.Join(b.dir, "bin", "quoteserver"))
	out, code = b.script("stop.sh", nil)
	if code != 0 {
		t.Errorf("make stop over stale pid files: exit %d\n%s", code, out)
	}
	if n := strings.Count(out, "is stale"); n != 3 || strings.Contains(out, "stop: stopped") {
		t.Errorf("make stop over three stale pid files said %d stale:\n%s", n, out)
	}
	if pids := b.pids(); len(pids) != 0 {
		t.Errorf("stale pid files left: %v", pids)
	}
	for what, pid := range map[string]int{"sleep": sleeper, "quoteserver started by the test": sameBinary} {
		if !running(pid) {
			t.Errorf("make stop killed the decoy %s (pid %d)", what, pid)
		}
	}
	requireRunning(t, "first clone after stale pid files", pidsA)

	out, code = a.script("stop.sh", nil)
	if code != 0 {
		t.Fatalf("first make stop: exit %d\n%s", code, out)
	}
	waitGone(t, pidsA)
}
