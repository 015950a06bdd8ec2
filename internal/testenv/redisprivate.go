package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// private is the redis-server of this test process, started on the first
// RedisURL when TEST_REDIS_URL is unset and shared by every test of the
// process until the process ends.
var private struct {
	once sync.Once
	url  string
	err  error
}

// privateRedisURL returns the redis:// URL of the process's own server,
// starting it on first use. Like StartRedisServer it skips the test (or
// fails it, under TICKERQ_REQUIRE_REDIS_SERVER) when redis-server is not
// installed.
func privateRedisURL(tb testing.TB) string {
	tb.Helper()
	bin := redisServerBin(tb)
	private.once.Do(func() { private.url, private.err = startPrivateRedis(bin, freePort) })
	if private.err != nil {
		tb.Fatalf("testenv: TEST_REDIS_URL is unset and the test process's own redis-server did not start: %v", private.err)
	}
	return private.url
}

// startPrivateRedis starts redis-server on a free loopback port from ports,
// persisting nothing, and returns its URL once it answers, itself (INFO's
// process_id). A port taken between choosing it and binding it makes the
// server exit at start; another port is then tried (onFreePort).
func startPrivateRedis(bin string, ports func() (int, error)) (string, error) {
	dir, err := os.MkdirTemp("", "tickerq-test-redis-")
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	// With no RDB snapshot and no append-only file the server never writes
	// in its directory, so the directory can go as soon as it has started.
	defer os.RemoveAll(dir)
	var url string
	err = onFreePort(ports, func(port int) error {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := append(redisArgs(port, dir), "--appendonly", "no", "--logfile", "", "--loglevel", "warning")
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		exited, err := startTiedToProcess(cmd)
		if err != nil {
			return fmt.Errorf("start %s: %w", bin, err)
		}
		if err := waitReady(addr, cmd.Process.Pid, exited, 20*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s %w:\n%s", addr, err, out.String())
		}
		// out goes on taking the server's warnings, rare and unread.
		url = "redis://" + addr
		return nil
	})
	return url, err
}

// startTiedToProcess starts cmd so that it is killed when the test process
// ends, however it ends: a test binary has no hook that runs at its exit
// (no TestMain is required of a package), so the kernel must do it. On
// Linux the child gets SIGKILL when the OS thread that started it exits
// (Pdeathsig), so cmd is started from a goroutine locked to its thread
// that waits for the child: the thread lives exactly as long as the child,
// or as the process. The returned channel is closed when cmd has exited.
func startTiedToProcess(cmd *exec.Cmd) (<-chan struct{}, error) {
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// child, and no other goroutine ever runs on it.
		runtime.LockOSThread()
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
