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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of a SentinelSet monitor.
const SentinelMaster = "tickerq"

// SentinelSet is a Redis master, one replica and three sentinels of one
// test's own, on free loopback ports, for tests of failover: the sentinels
// promote the replica a few seconds after the master dies.
type SentinelSet struct {
	Master  *RedisServer
	Replica *RedisServer

	tb        testing.TB
	sentinels []*sentinelProc
}

// sentinelProc is one `redis-server CONF --sentinel` process.
type sentinelProc struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Sentinel timing: small, so that a failover takes a few seconds. The
// master is judged down after DownAfter without an answer; the sentinels
// then agree (quorum 2 of 3), elect a leader and promote the replica.
const (
	DownAfter       = time.Second
	failoverTimeout = 10 * time.Second
	sentinelQuorum  = 2
	sentinelCount   = 3
)

// StartSentinelSet starts a master (redis-server with masterArgs), a
// replica of it and three sentinels monitoring it as SentinelMaster, and
// waits until every sentinel knows the replica and the other two
// sentinels, so that a failover can be agreed at once. Everything is
// killed when the test ends. Like StartRedisServer it skips the test when
// redis-server is not installed. A sentinel is `redis-server CONF
// --sentinel`, which is what Debian's redis-sentinel package runs, so no
// other program is needed.
func StartSentinelSet(tb testing.TB, masterArgs ...string) *SentinelSet {
	tb.Helper()
	master := StartRedisServer(tb, masterArgs...)
	replica := StartRedisServer(tb, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	s := &SentinelSet{Master: master, Replica: replica, tb: tb}
	for range sentinelCount {
		s.sentinels = append(s.sentinels, s.startSentinel())
	}
	s.waitReady(30 * time.Second)
	return s
}

func (s *SentinelSet) startSentinel() *sentinelProc {
	s.tb.Helper()
	p := &sentinelProc{port: FreePort(s.tb), dir: s.tb.TempDir(), done: make(chan struct{})}
	ms := strconv.FormatInt(DownAfter.Milliseconds(), 10)
	conf := strings.Join([]string{
		"port " + strconv.Itoa(p.port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + p.dir,
		"logfile sentinel.log",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", SentinelMaster, s.Master.Port(), sentinelQuorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %s", SentinelMaster, ms),
		fmt.Sprintf("sentinel failover-timeout %s %d", SentinelMaster, failoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 1", SentinelMaster),
	}, "\n") + "\n"
	// The sentinel rewrites its file with what it learns, so it must be
	// a writable file of its own.
	path := filepath.Join(p.dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		s.tb.Fatalf("testenv: write sentinel.conf: %v", err)
	}
	p.cmd = exec.Command(s.Master.bin, path, "--sentinel")
	var out bytes.Buffer
	p.cmd.Stdout, p.cmd.Stderr = &out, &out
	if err := p.cmd.Start(); err != nil {
		s.tb.Fatalf("testenv: start sentinel: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	s.tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *sentinelProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

func (p *sentinelProc) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "sentinel.log"))
	return string(b)
}

// URL is the redis-sentinel:// URL of the set, as asynq.ParseRedisURI
// reads it: every sentinel, and the master's name. (asynq takes no
// database number from it: the programs use database 0.)
func (s *SentinelSet) URL() string {
	addrs := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		addrs[i] = p.addr()
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "?master=" + SentinelMaster
}

// Logs returns every sentinel's log, for a failing test's message.
func (s *SentinelSet) Logs() string {
	var b strings.Builder
	for i, p := range s.sentinels {
		fmt.Fprintf(&b, "--- sentinel %d (%s) ---\n%s", i, p.addr(), p.log())
	}
	return b.String()
}

// MasterAddrs returns the master address each sentinel reports, in order;
// "" for a sentinel that did not answer.
func (s *SentinelSet) MasterAddrs(ctx context.Context) []string {
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: p.addr(), MaxRetries: -1})
		hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		_ = c.Close()
		if err == nil && len(hp) == 2 {
			out[i] = net.JoinHostPort(hp[0], hp[1])
		}
	}
	return out
}

// WaitPromoted polls the sentinels until every one of them names a master
// other than old, and returns it. It fails the test after timeout.
func (s *SentinelSet) WaitPromoted(old string, timeout time.Duration) string {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addrs := s.MasterAddrs(ctx)
		cancel()
		agreed := addrs[0] != "" && addrs[0] != old
		for _, a := range addrs[1:] {
			agreed = agreed && a == addrs[0]
		}
		if agreed {
			return addrs[0]
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("testenv: sentinels still name %v, not a new master, %s after asking\n%s", addrs, timeout, s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StallReplica stops (SIGSTOP) or resumes (SIGCONT) the replica process,
// as a replica that falls behind: while it is stopped the master goes on
// acknowledging writes it has not replicated, and what does not fit in the
// sockets' buffers is lost if the master dies then.
func (s *SentinelSet) StallReplica(stop bool) {
	s.tb.Helper()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	s.Replica.mu.Lock()
	defer s.Replica.mu.Unlock()
	if s.Replica.cmd == nil {
		s.tb.Fatalf("testenv: replica on %s is not running", s.Replica.Addr())
	}
	if err := s.Replica.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("testenv: signal the replica: %v", err)
	}
}

// waitReady waits until the replica is in sync and every sentinel sees
// the replica and the other sentinels.
func (s *SentinelSet) waitReady(timeout time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	rep := redis.NewClient(&redis.Options{Addr: s.Replica.Addr(), MaxRetries: -1})
	defer rep.Close()
	var why string
	for time.Now().Before(deadline) {
		why = s.notReady(rep)
		if why == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("testenv: sentinel set not ready within %s: %s\n%s", timeout, why, s.Logs())
}

// notReady says what is not ready yet, or "".
func (s *SentinelSet) notReady(rep *redis.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := rep.Info(ctx, "replication").Result()
	if err != nil {
		return "replica: " + err.Error()
	}
	if !strings.Contains(info, "master_link_status:up") {
		return "replica not in sync with the master"
	}
	for _, p := range s.sentinels {
		select {
		case <-p.done:
			s.tb.Fatalf("testenv: sentinel on %s exited:\n%s", p.addr(), p.log())
		default:
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: p.addr(), MaxRetries: -1})
		m, err := c.Master(ctx, SentinelMaster).Result()
		_ = c.Close()
		switch {
		case err != nil:
			return "sentinel " + p.addr() + ": " + err.Error()
		case m["num-slaves"] != "1":
			return "sentinel " + p.addr() + " sees " + m["num-slaves"] + " replicas"
		case m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1):
			return "sentinel " + p.addr() + " sees " + m["num-other-sentinels"] + " other sentinels"
		}
	}
	return ""
}
