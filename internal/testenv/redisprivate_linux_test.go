package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// childEnv marks the test binary run by TestPrivateServerDiesWithProcess.
const childEnv = "TESTENV_PRIVATE_SERVER_CHILD"

// The process's own redis-server dies with the process, although no
// TestMain stops it: a child test process starts one, prints its URL and
// exits; the server must then stop answering.
func TestPrivateServerDiesWithProcess(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		t.Setenv("TEST_REDIS_URL", "")
		RedisURL(t)
		fmt.Printf("private-server %s\n", private.url)
		os.Exit(0) // at once, as a test binary killed by a timeout would
	}
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPrivateServerDiesWithProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test process: %v\n%s", err, out)
	}
	_, raw, ok := strings.Cut(string(out), "private-server ")
	u, perr := url.Parse(strings.TrimSpace(raw))
	if !ok || perr != nil || u.Host == "" {
		t.Fatalf("child printed no server URL:\n%s", out)
	}
	c := redis.NewClient(&redis.Options{Addr: u.Host, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(t.Context()).Err() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = c.Shutdown(context.Background()) // leave no server behind
			t.Fatalf("the child's redis-server on %s still answers 10 s after the child exited", u.Host)
		}
	}
}
