package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process of one test's own, on a free
// loopback port, for tests that kill, restart or replicate Redis: things a
// test must never do to the Redis the other tests share. Its files (the
// append-only file, the log) live in a directory of the test's, so a
// restarted server finds what the killed one persisted.
type RedisServer struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedisServer starts `redis-server` (found on PATH) on a free loopback
// port with args appended to its command line, e.g. "--appendonly", "yes",
// and waits until it answers PING. The server is killed when the test ends.
// The test is skipped, not failed, when redis-server is not installed and
// TICKERQ_REQUIRE_REDIS_SERVER is unset; `make services` installs it.
func StartRedisServer(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	s := &RedisServer{tb: tb, bin: redisServerBin(tb), dir: tb.TempDir(), port: FreePort(tb), args: args}
	tb.Cleanup(s.Kill)
	s.Start()
	return s
}

// redisServerBin finds redis-server on PATH. Without it the test is
// skipped, or failed when TICKERQ_REQUIRE_REDIS_SERVER is set (as `make
// test` does, so that no Redis test goes missing unnoticed).
func redisServerBin(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("TICKERQ_REQUIRE_REDIS_SERVER") != "" {
			tb.Fatalf("testenv: redis-server not found: %v", err)
		}
		tb.Skipf("testenv: redis-server not installed (run `make services`): %v", err)
	}
	return bin
}

// redisArgs is the command line of a test's redis-server on port, working
// in dir: loopback only, in the foreground, no RDB snapshots.
func redisArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--daemonize", "no",
	}
}

// errExited is waitReady's answer when the server exits before it answers.
var errExited = errors.New("exited at start")

// waitReady polls addr with PING until it answers, the process behind it
// exits (exited is closed) or timeout passes.
func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer ctl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ctl.Ping(ctx).Err()
		cancel()
		switch {
		case err == nil:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("did not answer within %s: %w", timeout, err)
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return port
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's TCP port.
func (s *RedisServer) Port() int { return s.port }

// Dir is the server's working directory (its append-only file and log).
func (s *RedisServer) Dir() string { return s.dir }

// URL is the redis:// URL of database db on this server.
func (s *RedisServer) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr(), db) }

// Start (re)starts the server on its port and waits until it answers PING.
// It does nothing if the server is running.
func (s *RedisServer) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, append(redisArgs(s.port, s.dir), append([]string{"--logfile", "redis.log"}, s.args...)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("testenv: start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	if err := waitReady(s.Addr(), done, 20*time.Second); err != nil {
		if errors.Is(err, errExited) {
			s.cmd = nil
		}
		s.tb.Fatalf("testenv: redis-server on %s %v:\n%s%s", s.Addr(), err, out.String(), s.Log())
	}
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. It does nothing if the server is not running.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// Log returns the server's log file, for a failing test's message.
func (s *RedisServer) Log() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	return string(b)
}
