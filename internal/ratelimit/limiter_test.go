package ratelimit_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/ratelimit"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		want  ratelimit.Rate
		burst int
		bad   bool
	}{
		{in: "", want: ratelimit.Rate{}},
		{in: "50/s", want: ratelimit.Rate{N: 50, Period: time.Second}, burst: 2},
		{in: " 600/m ", want: ratelimit.Rate{N: 600, Period: time.Minute}, burst: 2},
		{in: "39/s", want: ratelimit.Rate{N: 39, Period: time.Second}, burst: 1},
		{in: "1/h", want: ratelimit.Rate{N: 1, Period: time.Hour}, burst: 1},
		{in: "50", bad: true},
		{in: "50/d", bad: true},
		{in: "0/s", bad: true},
		{in: "-5/s", bad: true},
		{in: "+5/s", bad: true},
		{in: "05/s", bad: true},
		{in: "5.5/s", bad: true},
		{in: "/s", bad: true},
		{in: "50/S", bad: true},
		{in: "50 / s", bad: true},
		{in: "2000000/s", bad: true},
	} {
		got, err := ratelimit.ParseRate(tc.in)
		switch {
		case tc.bad:
			if !errors.Is(err, ratelimit.ErrInvalidRate) {
				t.Errorf("ParseRate(%q) = %v, %v; want ErrInvalidRate", tc.in, got, err)
			}
		case err != nil || got != tc.want:
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case !got.IsZero() && (got.Burst() != tc.burst || got.String() != strings.TrimSpace(tc.in)):
			t.Errorf("ParseRate(%q): burst %d, String %q; want burst %d and the input back", tc.in, got.Burst(), got.String(), tc.burst)
		}
	}
}

// counter is an Observer that counts.
type counter struct {
	permits, waits, throttled, paused, peerPauses, calls atomic.Int64
}

func (c *counter) ObservePermits(n int)           { c.permits.Add(int64(n)) }
func (c *counter) ObserveWait(time.Duration)      { c.waits.Add(1) }
func (c *counter) ObserveThrottled(p bool)        { c.throttled.Add(1) }
func (c *counter) ObserveRedisCall(string, error) { c.calls.Add(1) }
func (c *counter) ObservePause(fromPeer bool) {
	if fromPeer {
		c.peerPauses.Add(1)
	} else {
		c.paused.Add(1)
	}
}

func newClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start runs a limiter, as one worker process would, on its own client.
func start(t *testing.T, redisURL, baseURL string, rate ratelimit.Rate) (*ratelimit.Limiter, *counter) {
	t.Helper()
	obs := &counter{}
	l, err := ratelimit.Start(context.Background(), ratelimit.Config{
		Redis: newClient(t, redisURL), BaseURL: baseURL, APIKey: "secret-key-7f3", Rate: rate,
		Observer: obs, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(l.Close)
	return l, obs
}

// TestSharedRate: three limiters on one Redis (three workers) serve 120
// jobs that, like asynq, come back when a ThrottledError says. Together they
// must not exceed the rate (the burst aside), must keep it busy, and must
// ask Redis about once per permit, not once per waiting job and tick.
func TestSharedRate(t *testing.T) {
	t.Parallel()
	const jobs, perSecond = 120, 40
	redisURL := testenv.RedisURL(t)
	rate := ratelimit.Rate{N: perSecond, Period: time.Second}
	var limiters []*ratelimit.Limiter
	var observers []*counter
	for range 3 {
		l, obs := start(t, redisURL, "http://shared-rate.test", rate)
		limiters, observers = append(limiters, l), append(observers, obs)
	}

	var mu sync.Mutex
	var sent []time.Time
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range jobs {
		wg.Go(func() {
			l := limiters[i%len(limiters)]
			for {
				err := l.Wait(context.Background(), tasks.MaxSlotWait)
				var throttled *tasks.ThrottledError
				if errors.As(err, &throttled) {
					// asynq keeps the retry time in whole seconds.
					time.Sleep(time.Until(time.Now().Add(throttled.RetryAfter).Truncate(time.Second)))
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent = append(sent, time.Now())
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	took := time.Since(begin)

	slices.SortFunc(sent, func(a, b time.Time) int { return a.Compare(b) })
	busiest := 0
	for i := range sent {
		j := i
		for j < len(sent) && sent[j].Sub(sent[i]) < time.Second {
			j++
		}
		busiest = max(busiest, j-i)
	}
	var permits, calls, throttled int64
	for _, o := range observers {
		permits, calls, throttled = permits+o.permits.Load(), calls+o.calls.Load(), throttled+o.throttled.Load()
	}
	ideal := time.Duration(jobs-rate.Burst()) * time.Second / perSecond
	t.Logf("%d jobs at %s over 3 limiters: %s (ideal %s), busiest second %d, %d permits, %d redis calls, %d put back",
		jobs, rate, took.Round(time.Millisecond), ideal, busiest, permits, calls, throttled)
	if len(sent) != jobs {
		t.Fatalf("%d of %d jobs sent", len(sent), jobs)
	}
	if limit := perSecond + rate.Burst() + 1; busiest > limit {
		t.Errorf("busiest second saw %d requests; the limit allows %d", busiest, limit)
	}
	if took < ideal*9/10 {
		t.Errorf("drained in %s, faster than the limit allows (%s)", took, ideal)
	}
	if took > 3*ideal { // a wide sanity bound: the limiter idled
		t.Errorf("drained in %s; the limit allows %s", took, ideal)
	}
	if calls > 6*int64(jobs) {
		t.Errorf("%d redis calls for %d permits: the limiters poll", calls, jobs)
	}
	if throttled == 0 {
		t.Errorf("no job was put back: 40 jobs per limiter cannot all wait under %s", tasks.MaxSlotWait)
	}
}

// TestPauseReachesEveryWorker: a 429 with Retry-After seen by one worker
// pauses the others at once (pub/sub), and a worker starting later reads it.
func TestPauseReachesEveryWorker(t *testing.T) {
	t.Parallel()
	for _, rate := range []ratelimit.Rate{{}, {N: 100, Period: time.Second}} {
		t.Run("rate="+rate.String(), func(t *testing.T) {
			t.Parallel()
			// Pub/sub spans Redis databases: each test has its own upstream.
			redisURL, upstream := testenv.RedisURL(t), "http://pause-"+rate.String()+".test"
			a, aObs := start(t, redisURL, upstream, rate)
			b, bObs := start(t, redisURL, upstream, rate)
			other, _ := start(t, redisURL, upstream+"/other", rate)

			a.Pause(context.Background(), 3*time.Second)
			wantPaused(t, a, "a, which saw the 429")
			deadline := time.Now().Add(2 * time.Second)
			for bObs.peerPauses.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			wantPaused(t, b, "b, told by pub/sub")
			late, _ := start(t, redisURL, upstream, rate)
			wantPaused(t, late, "a worker started during the pause")
			if err := other.Wait(context.Background(), 10*time.Millisecond); err != nil {
				t.Errorf("another upstream is paused too: %v", err)
			}
			if aObs.paused.Load() != 1 || aObs.peerPauses.Load() != 0 {
				t.Errorf("a counted %d pauses received, %d from peers; want 1, 0", aObs.paused.Load(), aObs.peerPauses.Load())
			}

			// Within the slot's bound, a job waits the pause out.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			begin := time.Now()
			if err := b.Wait(ctx, 5*time.Second); err != nil {
				t.Fatalf("Wait through the pause: %v", err)
			}
			if waited := time.Since(begin); waited < time.Second {
				t.Errorf("b sent after %s, inside the 3 s pause", waited)
			}
		})
	}
}

// wantPaused checks that l sends a job back to asynq for the pause.
func wantPaused(t *testing.T, l *ratelimit.Limiter, who string) {
	t.Helper()
	err := l.Wait(context.Background(), 100*time.Millisecond)
	var throttled *tasks.ThrottledError
	if !errors.As(err, &throttled) || !throttled.Paused || throttled.RetryAfter < time.Second || throttled.RetryAfter > 4500*time.Millisecond {
		t.Errorf("%s: Wait = %v; want a ThrottledError for the pause, retry in 1-4.5 s (the pause, and a second for asynq's rounding with a rate)", who, err)
	}
	if tasks.Classify(err) != tasks.RateLimited || tasks.IsFailure(err) {
		t.Errorf("%s: %v is %v, failure %v; want rate_limited, not a failure", who, err, tasks.Classify(err), tasks.IsFailure(err))
	}
}

// TestNoRateNoRedisCall: without a rate and outside a pause, a job's Wait
// costs no Redis round trip.
func TestNoRateNoRedisCall(t *testing.T) {
	t.Parallel()
	l, obs := start(t, testenv.RedisURL(t), "http://no-rate.test", ratelimit.Rate{})
	before := obs.calls.Load()
	for range 1000 {
		if err := l.Wait(context.Background(), tasks.MaxSlotWait); err != nil {
			t.Fatal(err)
		}
	}
	if n := obs.calls.Load() - before; n != 0 {
		t.Errorf("1000 waits made %d redis calls; want 0", n)
	}
}

// TestRedisHoldsNoSecret: the keys the limiter writes name the upstream by
// a hash, never by its URL or API key.
func TestRedisHoldsNoSecret(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	l, _ := start(t, redisURL, "http://secret.test", ratelimit.Rate{N: 10, Period: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Wait(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	l.Pause(ctx, time.Minute)
	keys, err := newClient(t, redisURL).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("the limiter wrote no key")
	}
	for _, k := range keys {
		if k == testenv.ClaimKey {
			continue
		}
		if strings.Contains(k, "secret-key-7f3") || strings.Contains(k, "secret.test") {
			t.Errorf("redis key %q holds the upstream's name or key", k)
		}
		if !strings.Contains(k, ratelimit.Key("http://secret.test", "secret-key-7f3")) {
			t.Errorf("redis key %q is not named by the upstream's hash", k)
		}
	}
	if a, b := ratelimit.Key("http://u", "k1"), ratelimit.Key("http://u", "k2"); a == b {
		t.Errorf("two API keys share the limit key %s", a)
	}
}
