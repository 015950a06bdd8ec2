package broker

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/testenv"
)

// lines collects log lines; safe for concurrent use.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (b *lines) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.l = append(b.l, string(p))
	return len(p), nil
}

// count is how many lines hold s.
func (b *lines) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.l {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// pings counts the PINGs a client sends, and how many failed.
type pings struct{ sent, failed atomic.Int64 }

func (*pings) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*pings) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (p *pings) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "ping" {
			p.sent.Add(1)
			if err != nil {
				p.failed.Add(1)
			}
		}
		return err
	}
}

// Watch says once that Redis went away, however many pings fail, and once
// that it came back; meanwhile the outage mutes asynq's lines.
func TestWatchSaysOnceWhenRedisGoesAndComes(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, opt.Addr)
	opt.Addr = proxy.Addr()
	opt.MaxRetries = -1 // one try a ping: the test counts them
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	var p pings
	rdb.AddHook(&p)

	var logs lines
	o := &logging.Outage{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, rdb, 5*time.Millisecond, o, zerolog.New(&logs))
	}()
	defer func() { cancel(); <-done }()

	testenv.WaitUntil(t, "a ping succeeded", 30*time.Second, func() bool { return p.sent.Load() > 0 })
	proxy.SetDown(true)
	testenv.WaitUntil(t, "five pings failed", 30*time.Second, func() bool { return p.failed.Load() >= 5 })
	if n := logs.count("redis: not reachable"); n != 1 {
		t.Errorf("%d lines say redis is not reachable after %d failed pings, want 1", n, p.failed.Load())
	}
	var muted bytesCount
	logging.Asynq{L: zerolog.New(&muted).Level(zerolog.InfoLevel), Outage: o}.Error("Dequeue error: connection refused")
	if muted.n.Load() != 0 {
		t.Error("asynq's error was logged at its level during the outage")
	}

	proxy.SetDown(false)
	testenv.WaitUntil(t, "redis said back", 30*time.Second, func() bool { return logs.count("redis: reachable again after") == 1 })
	sent := p.sent.Load()
	testenv.WaitUntil(t, "five more pings", 30*time.Second, func() bool { return p.sent.Load() >= sent+5 })
	if n, m := logs.count("redis: not reachable"), logs.count("redis: reachable again"); n != 1 || m != 1 {
		t.Errorf("%d down and %d back lines, want 1 each", n, m)
	}
	if logs.count(`"asynq_lines_at_debug":1`) != 1 {
		t.Errorf("the back line does not count the muted asynq line")
	}
}

// bytesCount counts the bytes written to it.
type bytesCount struct{ n atomic.Int64 }

func (c *bytesCount) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }
