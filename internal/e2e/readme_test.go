package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A README shell block is a fenced block opened by "```sh". The line just
// before the fence may be an HTML comment that tells TestREADMEExamples how
// to run it:
//
//	<!-- readme-check: skip: REASON -->   not run (REASON is logged)
//	<!-- readme-check: until-signal -->   its last command runs until SIGINT:
//	                                      it must still run after a few
//	                                      seconds, then exit 0 on SIGINT
//
// Without a comment the block must end with exit 0 within blockTimeout.
const (
	readmeMarker      = "<!-- readme-check: "
	blockTimeout      = 2 * time.Minute
	untilSignalRunFor = 4 * time.Second
)

// readmeBlock is one shell block of the README.
type readmeBlock struct {
	line   int    // of the opening fence, 1-based
	mode   string // "", "skip" or "until-signal"
	reason string // why a skipped block is not run
	body   string
}

// readmeBlocks returns the shell blocks of the markdown text, in order.
func readmeBlocks(text string) ([]readmeBlock, error) {
	var (
		blocks []readmeBlock
		cur    *readmeBlock
		prev   string
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		case strings.TrimSpace(line) == "```sh":
			cur = &readmeBlock{line: n}
			if m, ok := strings.CutPrefix(strings.TrimSpace(prev), readmeMarker); ok {
				m, ok = strings.CutSuffix(m, " -->")
				switch {
				case !ok:
					return nil, fmt.Errorf("line %d: unterminated %q comment", n-1, readmeMarker)
				case m == "until-signal":
					cur.mode = m
				case strings.HasPrefix(m, "skip: "):
					cur.mode, cur.reason = "skip", strings.TrimPrefix(m, "skip: ")
				default:
					return nil, fmt.Errorf("line %d: unknown readme-check %q", n-1, m)
				}
			}
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: shell block never closed", cur.line)
	}
	return blocks, sc.Err()
}

// localAddr matches the loopback addresses a README example names: the
// defaults of make run (quoteserver 8000, UI 8080, worker admin 8081) and any
// other 8000-9999 port an example picks for a second program.
var localAddr = regexp.MustCompile(`127\.0\.0\.1:([89]\d\d\d)\b`)

// TestREADMEExamples runs every shell block of README.md in order, as pasted,
// from the root of a temporary clone right after its `make run`, on that
// clone's own ports, Redis DB and database: the addresses a block names are
// the make run defaults, rewritten to the clone's.
func TestREADMEExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make run and every README example")
	}
	for _, tool := range []string{"bash", "curl", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/services.sh and tools.sh install it): %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}

	e := newEnv(t)
	quote, admin, ui := freeAddr(t), freeAddr(t), freeAddr(t)
	c := newClone(t, e, quote, admin, ui)
	if err := os.CopyFS(filepath.Join(c.dir, "examples"), os.DirFS(filepath.Join("..", "..", "examples"))); err != nil {
		t.Fatal(err)
	}
	if out, code := c.run(); code != 0 {
		t.Fatalf("make run: exit %d\n%s", code, out)
	}
	ports := map[string]string{"8000": quote, "8080": ui, "8081": admin}
	rewrite := func(s string) string {
		return localAddr.ReplaceAllStringFunc(s, func(m string) string {
			port := m[len("127.0.0.1:"):]
			if _, ok := ports[port]; !ok {
				ports[port] = freeAddr(t)
			}
			return ports[port]
		})
	}

	ran, skipped := 0, 0
	for _, b := range blocks {
		name := fmt.Sprintf("README.md:%d", b.line)
		if b.mode == "skip" {
			t.Logf("%s: not run: %s", name, b.reason)
			skipped++
			continue
		}
		out, err := runBlock(t, c, b, rewrite(b.body))
		if err != nil {
			t.Errorf("%s: %v\n--- block (as run) ---\n%s--- output ---\n%s", name, err, rewrite(b.body), out)
			continue
		}
		ran++
	}
	t.Logf("README.md: %d shell blocks ran as pasted, %d marked not to run", ran, skipped)
}

// runBlock runs body with bash in the clone's root, in a process group of
// its own that is killed afterwards, so nothing a block starts outlives it.
func runBlock(t *testing.T, c *clone, b readmeBlock, body string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", body)
	cmd.Dir = c.dir
	cmd.Env = c.e.environ(c.vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	if b.mode == "until-signal" {
		select {
		case err := <-done:
			return out.String(), fmt.Errorf("ended before SIGINT (%v); its last command should run until stopped", err)
		case <-time.After(untilSignalRunFor):
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
			return out.String(), fmt.Errorf("SIGINT: %w", err)
		}
	}
	err := <-done
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out.String(), fmt.Errorf("still running after %s", blockTimeout)
	case errors.As(err, &exit):
		return out.String(), fmt.Errorf("exit %d", exit.ExitCode())
	case err != nil:
		return out.String(), err
	}
	return out.String(), nil
}

func TestReadmeBlocks(t *testing.T) {
	text := "intro\n```sh\necho one\n```\n\n<!-- readme-check: skip: needs Docker -->\n```sh\ndocker compose up\n```\n" +
		"<!-- readme-check: until-signal -->\n```sh\nbin/worker\n```\n```\noutput, not run\n```\n"
	got, err := readmeBlocks(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []readmeBlock{
		{line: 2, body: "echo one\n"},
		{line: 7, mode: "skip", reason: "needs Docker", body: "docker compose up\n"},
		{line: 11, mode: "until-signal", body: "bin/worker\n"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("readmeBlocks:\n got %v\nwant %v", got, want)
	}
	for _, bad := range []string{"```sh\necho\n", "<!-- readme-check: maybe -->\n```sh\nx\n```\n"} {
		if _, err := readmeBlocks(bad); err == nil {
			t.Errorf("readmeBlocks(%q): no error", bad)
		}
	}
	if !bytes.Contains([]byte(localAddr.ReplaceAllString("curl 127.0.0.1:8081/x psql 127.0.0.1:5432", "X")), []byte("127.0.0.1:5432")) {
		t.Error("localAddr rewrites the Postgres address")
	}
}
