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
// and waits until it answers, itself (INFO's process_id is its pid): a
// process that takes the port first makes it try another. The server is
// killed when the test ends.
// The test is skipped, not failed, when redis-server is not installed and
// TICKERQ_REQUIRE_REDIS_SERVER is unset; `make services` installs it.
func StartRedisServer(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	return startRedisServer(tb, freePort, args...)
}

// startRedisServer is StartRedisServer on a port from ports: another one
// when a process took the one it was given (onFreePort).
func startRedisServer(tb testing.TB, ports func() (int, error), args ...string) *RedisServer {
	tb.Helper()
	s := &RedisServer{tb: tb, bin: redisServerBin(tb), dir: tb.TempDir(), args: args}
	tb.Cleanup(s.Kill)
	if err := onFreePort(ports, func(port int) error {
		s.port = port
		return s.start()
	}); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
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

var (
	// errExited is waitReady's answer when the server exits before it
	// answers.
	errExited = errors.New("exited at start")
	// errForeign is waitReady's answer when another process answers on the
	// server's address: it took the port between its choice and the bind.
	errForeign = errors.New("lost its port to another process")
)

// waitReady polls addr until the redis-server of process pid answers PING
// there and INFO's process_id says it is that process, the process exits
// (exited is closed), another Redis answers (errForeign) or timeout passes.
// A PING alone would take another Redis that took the port, while ours
// exits unable to bind it.
func waitReady(addr string, pid int, exited <-chan struct{}, timeout time.Duration) error {
	ctl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer ctl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ctl.Ping(ctx).Err() // an error while it loads its data
		var got int
		if err == nil {
			got, err = serverPID(ctx, ctl)
		}
		cancel()
		switch {
		case err == nil && got == pid:
			return nil
		case err == nil:
			return fmt.Errorf("%w: process_id %d answers there, not pid %d", errForeign, got, pid)
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

// serverPID asks the Redis behind c for its process id (INFO server).
func serverPID(ctx context.Context, c *redis.Client) (int, error) {
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	if err != nil {
		return 0, fmt.Errorf("INFO server: process_id: %w", err)
	}
	return pid, nil
}

// onFreePort runs start on a port from ports, and on another when a process
// took it between its choice and the bind (the server exited at start, or
// another Redis answers there): three ports at most.
func onFreePort(ports func() (int, error), start func(port int) error) error {
	var err error
	for range 3 {
		port, perr := ports()
		if perr != nil {
			return perr
		}
		if err = start(port); !errors.Is(err, errExited) && !errors.Is(err, errForeign) {
			return err
		}
	}
	return err
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

// Start (re)starts the server on its port and waits until it answers,
// itself.
// It does nothing if the server is running.
func (s *RedisServer) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("testenv: %v", err)
	}
}

// start is Start, returning its error; a server that did not start is
// stopped.
func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.bin, append(redisArgs(s.port, s.dir), append([]string{"--logfile", "redis.log"}, s.args...)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	if err := waitReady(s.Addr(), cmd.Process.Pid, done, 20*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s %w:\n%s%s", s.Addr(), err, out.String(), s.Log())
	}
	s.cmd, s.done = cmd, done
	return nil
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
