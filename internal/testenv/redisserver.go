package testenv

import (
	"bytes"
	"context"
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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("TICKERQ_REQUIRE_REDIS_SERVER") != "" {
			tb.Fatalf("testenv: redis-server not found: %v", err)
		}
		tb.Skipf("testenv: redis-server not installed (run `make services`): %v", err)
	}
	s := &RedisServer{tb: tb, bin: bin, dir: tb.TempDir(), port: FreePort(tb), args: args}
	tb.Cleanup(s.Kill)
	s.Start()
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--logfile", "redis.log", "--save", "",
		"--daemonize", "no",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("testenv: start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	ctl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer ctl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ctl.Ping(ctx).Err()
		cancel()
		switch {
		case err == nil:
			return
		case time.Now().After(deadline):
			s.tb.Fatalf("testenv: redis-server on %s did not answer within 20s: %v\n%s%s", s.Addr(), err, out.String(), s.Log())
		}
		select {
		case <-done:
			s.cmd = nil
			s.tb.Fatalf("testenv: redis-server on %s exited at start:\n%s%s", s.Addr(), out.String(), s.Log())
		case <-time.After(50 * time.Millisecond):
		}
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
