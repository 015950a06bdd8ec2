package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

// privateRedis is a redis-server of one test, on a free loopback port, that
// the test may kill. It keeps an append-only file fsynced on every write,
// so that what Redis acknowledged survives a kill -9 and a restart.
type privateRedis struct {
	addr, dir string
	cmd       *exec.Cmd
}

func startPrivateRedis(t *testing.T, dir, addr string) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		_ = ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &privateRedis{addr: addr, dir: dir, cmd: cmd}
	t.Cleanup(r.kill)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer: %v", addr, err)
		}
	}
}

// kill stops the server with SIGKILL and waits for it; a second call does
// nothing.
func (r *privateRedis) kill() {
	if r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
}

// TestEnqueueFaultAccounting cuts Redis off in the middle of a big enqueue
// and checks that every symbol is accounted for once: each Enqueued task is
// in Redis, no Failed one is, and Unknown ones are few (at most the calls
// in flight when the connection went).
func TestEnqueueFaultAccounting(t *testing.T) {
	t.Parallel()
	const (
		n       = 20000
		cutAt   = 3000
		workers = 32
	)
	tests := []struct {
		name  string
		proxy bool // cut a TCP proxy instead of killing redis-server
	}{
		{name: "redis-server killed"},
		{name: "connection cut by a proxy", proxy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startPrivateRedis(t, t.TempDir(), "")
			addr := srv.addr
			var cut func()
			if tt.proxy {
				p := testenv.NewProxy(t, srv.addr)
				addr = p.Addr()
				cut = func() { p.SetDown(true) }
			} else {
				cut = srv.kill
			}
			rc, err := NewRedisClient(asynq.RedisClientOpt{Addr: addr})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			client := asynq.NewClientFromRedisClient(rc)
			defer client.Close()

			var done atomic.Int64
			var once sync.Once
			symbols := symbolsN(n)
			res, err := EnqueueAll(t.Context(), client, symbols, EnqueueConfig{
				Workers: workers, IDPrefix: "fault",
				Each: func(Result) {
					if done.Add(1) == cutAt {
						once.Do(cut)
					}
				},
			})
			if !errors.Is(err, ErrEnqueue) {
				t.Fatalf("EnqueueAll error = %v, want ErrEnqueue", err)
			}
			if len(res) != n {
				t.Fatalf("%d results for %d symbols", len(res), n)
			}

			if !tt.proxy {
				srv = startPrivateRedis(t, srv.dir, srv.addr) // replays the append-only file
			}
			check := redis.NewClient(&redis.Options{Addr: srv.addr})
			defer check.Close()
			var count [Unknown + 1]int
			inRedis := 0
			for i, r := range res {
				if r.Symbol != symbols[i] {
					t.Fatalf("result %d is for %s, want %s", i, r.Symbol, symbols[i])
				}
				count[r.Outcome]++
				key := fmt.Sprintf("asynq:{%s}:t:%s", DefaultQueue, TaskID("fault", r.Symbol))
				found, err := check.Exists(t.Context(), key).Result()
				if err != nil {
					t.Fatalf("EXISTS %s: %v", key, err)
				}
				inRedis += int(found)
				switch r.Outcome {
				case Enqueued:
					if found == 0 {
						t.Errorf("%s reported enqueued, but %s is not in Redis", r.Symbol, key)
					}
				case Failed:
					if found == 1 {
						t.Errorf("%s reported failed (%v), but %s is in Redis", r.Symbol, r.Err, key)
					}
				case Unknown:
				default:
					t.Errorf("%s: outcome %v, want enqueued, failed or unknown", r.Symbol, r.Outcome)
				}
			}
			pending, err := check.LLen(t.Context(), "asynq:{default}:pending").Result()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d symbols: %d enqueued, %d failed, %d unknown (%d of them in Redis); %d tasks in Redis, %d pending",
				n, count[Enqueued], count[Failed], count[Unknown], inRedis-count[Enqueued], inRedis, pending)
			if count[Enqueued] < cutAt-workers || count[Failed] == 0 {
				t.Errorf("%d enqueued and %d failed: the cut at %d did not happen mid-run", count[Enqueued], count[Failed], cutAt)
			}
			if count[Unknown] > workers {
				t.Errorf("%d unknown, want at most the %d calls in flight", count[Unknown], workers)
			}
			if int(pending) != inRedis {
				t.Errorf("%d pending, want the %d tasks in Redis", pending, inRedis)
			}
		})
	}
}

// TestEnqueueIDPrefixRerun enqueues the same symbols twice under one
// prefix: the second run adds nothing and reports each as already enqueued.
func TestEnqueueIDPrefixRerun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	symbols := []string{"GOOG", "msft", "BRK.B"}
	for run, want := range []EnqueueOutcome{Enqueued, AlreadyEnqueued} {
		res, err := EnqueueAll(t.Context(), b.client, symbols, EnqueueConfig{IDPrefix: "rerun:1"})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, r := range res {
			if r.Outcome != want {
				t.Errorf("run %d: %s is %v (%v), want %v", run, r.Symbol, r.Outcome, r.Err, want)
			}
		}
		if want := "rerun:1:MSFT"; res[1].ID != want {
			t.Errorf("run %d: ID %q, want %q", run, res[1].ID, want)
		}
	}
	if got := statsOf(t, b, DefaultQueue).Pending; got != len(symbols) {
		t.Errorf("%d pending, want %d", got, len(symbols))
	}
}

// replyError is an error reply from Redis, as go-redis types it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestClassify(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	asynqErr := errors.New("UNKNOWN: redis eval error: whatever") // asynq flattens the cause
	tests := []struct {
		name    string
		sent    int
		cmd     string
		last    error
		err     error
		want    EnqueueOutcome
		wantCut bool // connectionLost
	}{
		{"refused before anything was sent", 0, "", nil, errors.New("task typename cannot be empty"), Failed, false},
		{"no hook: a redis error of unknown cause", 0, "", nil, asynqErr, Unknown, false},
		{"queue registration refused", 1, "sadd", refused, asynqErr, Failed, true},
		{"queue registration lost", 1, "sadd", io.EOF, asynqErr, Failed, true},
		{"script: connection refused", 2, "evalsha", refused, asynqErr, Failed, true},
		{"script: pool timeout", 2, "evalsha", redis.ErrPoolTimeout, asynqErr, Failed, true},
		{"script: error reply", 2, "evalsha", replyError("OOM command not allowed"), asynqErr, Failed, false},
		{"script: EOF", 2, "evalsha", io.EOF, asynqErr, Unknown, true},
		{"script: reset", 3, "eval", reset, asynqErr, Unknown, true},
		{"script: read timeout", 2, "evalsha", &net.OpError{Op: "read", Err: osTimeout{}}, asynqErr, Unknown, true},
		{"script: context canceled mid-call", 2, "evalsha", context.Canceled, asynqErr, Unknown, true},
		{"every command answered", 2, "evalsha", nil, asynqErr, Unknown, false},
	}
	for _, tt := range tests {
		rec := &callRecord{sent: tt.sent, lastCmd: tt.cmd, lastErr: tt.last}
		if got := classify(rec, tt.err); got != tt.want {
			t.Errorf("%s: classify = %v, want %v", tt.name, got, tt.want)
		}
		if got := connectionLost(rec); got != tt.wantCut {
			t.Errorf("%s: connectionLost = %v, want %v", tt.name, got, tt.wantCut)
		}
	}
}

type osTimeout struct{}

func (osTimeout) Error() string   { return "i/o timeout" }
func (osTimeout) Timeout() bool   { return true }
func (osTimeout) Temporary() bool { return true }

func TestCheckIDPrefix(t *testing.T) {
	t.Parallel()
	long := ""
	for range MaxIDPrefixLen + 1 {
		long += "a"
	}
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"run1", true},
		{"nightly:2026-12-01", true},
		{"a.b_c-D", true},
		{long[:MaxIDPrefixLen], true},
		{"", false},
		{long, false},
		{":x", false},
		{"x:", false},
		{"a::b", false},
		{"has space", false},
		{"-dash", false},
		{"sched", false},
		{"sched:x", false},
		{"schedule", true},
		{"ünï", false},
		{strconv.Quote("q"), false},
	}
	for _, tt := range tests {
		if err := CheckIDPrefix(tt.prefix); (err == nil) != tt.ok {
			t.Errorf("CheckIDPrefix(%q) = %v, want ok %v", tt.prefix, err, tt.ok)
		}
	}
}
