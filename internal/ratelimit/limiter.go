package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/tasks"
)

// Observer records what a Limiter does (package metrics implements it).
type Observer interface {
	// ObservePermits counts permits Redis granted to this process.
	ObservePermits(n int)
	// ObserveWait records a job that waited d in its slot before sending.
	ObserveWait(d time.Duration)
	// ObserveThrottled counts a job sent back to asynq, for a pause or for
	// its turn.
	ObserveThrottled(paused bool)
	// ObservePause counts an upstream pause: one this process received
	// (a 429 with Retry-After), or one another worker announced.
	ObservePause(fromPeer bool)
	// ObserveRedisCall counts the limiter's Redis calls, by operation.
	ObserveRedisCall(op string, err error)
}

// Config configures a Limiter.
type Config struct {
	// Redis is the worker's client.
	Redis redis.UniversalClient
	// BaseURL and APIKey name the upstream: workers share a limit and
	// pauses when both are the same. Only a hash of them reaches Redis.
	BaseURL, APIKey string
	// Rate limits the requests of every worker together; zero: no limit,
	// only the upstream's pauses are shared.
	Rate Rate
	// Observer, when set, records permits, waits, put-backs and pauses.
	Observer Observer
	// Logger receives the limiter's warnings.
	Logger zerolog.Logger
}

// Timeouts of the limiter's Redis calls.
const (
	callTimeout = time.Second
	// errorBackoff is how long the dispatcher waits after a failed call.
	errorBackoff = 100 * time.Millisecond
	// peerSlack is how much later than the pause this process knows a
	// peer's announcement must end to count as news: our own announcement
	// comes back to us a little later than we set it.
	peerSlack = 50 * time.Millisecond
	// asynqRounding makes up for asynq rounding retry times down to the
	// second.
	asynqRounding = time.Second - time.Millisecond
	// serviceWeight is the weight of the newest sample in the moving
	// average of the time between two permits to this process.
	serviceWeight = 0.2
)

// pauseScript extends the pause of KEYS[1] to ARGV[1] ms from now, unless
// a longer one is already set, and then announces it on channel ARGV[2].
var pauseScript = redis.NewScript(`
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
return 0
`)

// bookScript books the return of a job put back: ARGV[1] seconds after the
// previous booking of KEYS[1], at the limit's interval, and no sooner than
// ARGV[2] seconds from now. It returns the delay in seconds, as text. Times
// count from 2017 so that microseconds fit a double, as in redis_rate.
var bookScript = redis.NewScript(`
local t = redis.call('TIME')
local now = (t[1] - 1483228800) + t[2] / 1000000
local at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1]), now + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], tostring(at), 'PX', math.ceil((at - now) * 1000) + 1000)
return tostring(at - now)
`)

// Limiter is one process's share of an upstream's limit and pauses. It
// implements tasks.RateLimiter; its methods are safe for concurrent use.
type Limiter struct {
	rdb      redis.UniversalClient
	gcra     *redis_rate.Limiter
	rate     Rate
	key      string // GCRA state, under redis_rate's "rate:" prefix
	bookKey  string // when the last put-back job was told to return
	pauseKey string // the pause, with its expiry; also the channel's name
	obs      Observer
	log      zerolog.Logger

	pausedUntil atomic.Int64 // UnixNano on this host's clock; 0: never paused

	mu         sync.Mutex
	waiters    []*waiter     // in arrival order
	service    time.Duration // moving average of the time between permits while jobs wait
	lastGrant  time.Time
	backlogged bool // jobs still waited after the last grant

	wake   chan struct{} // a job started waiting (capacity 1)
	pubsub *redis.PubSub
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ tasks.RateLimiter = (*Limiter)(nil)

type waiter struct {
	ready   chan struct{} // closed when the permit is granted
	granted bool          // guarded by Limiter.mu
}

// Key names an upstream in Redis: a hash of its base URL and API key, so
// the key never reaches Redis.
func Key(baseURL, apiKey string) string {
	sum := sha256.Sum256([]byte(strings.TrimRight(baseURL, "/") + "\x00" + apiKey))
	return hex.EncodeToString(sum[:16])
}

// Start subscribes to the upstream's pauses, reads the current one, and
// starts the goroutines that Close stops: the subscriber and, with a rate,
// the dispatcher of permits.
func Start(ctx context.Context, cfg Config) (*Limiter, error) {
	name := "tickerq:ratelimit:" + Key(cfg.BaseURL, cfg.APIKey)
	l := &Limiter{
		rdb:      cfg.Redis,
		gcra:     redis_rate.NewLimiter(cfg.Redis),
		rate:     cfg.Rate,
		key:      name,
		bookKey:  name + ":booked",
		pauseKey: name + ":pause",
		obs:      cfg.Observer,
		log:      cfg.Logger,
		wake:     make(chan struct{}, 1),
	}
	if !l.rate.IsZero() {
		l.service = l.rate.interval()
	}
	if l.obs == nil {
		l.obs = nopObserver{}
	}
	subCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l.pubsub = cfg.Redis.Subscribe(subCtx, l.pauseKey)
	if _, err := l.pubsub.Receive(subCtx); err != nil { // the confirmation
		_ = l.pubsub.Close()
		return nil, fmt.Errorf("subscribe to upstream pauses: %w", err)
	}
	if err := l.refresh(subCtx); err != nil {
		_ = l.pubsub.Close()
		return nil, err
	}
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = stop
	l.wg.Add(1)
	go l.listen(run)
	if !l.rate.IsZero() {
		l.wg.Add(1)
		go l.dispatch(run)
	}
	return l, nil
}

// Close stops the goroutines and waits for them. Jobs still waiting get no
// permit and go back to asynq when their wait ends.
func (l *Limiter) Close() {
	l.cancel()
	_ = l.pubsub.Close()
	l.wg.Wait()
}

// Rate is the limit the limiter keeps; zero for none.
func (l *Limiter) Rate() Rate { return l.rate }

// Wait implements tasks.RateLimiter. Without a rate and outside a pause it
// returns at once without calling Redis.
func (l *Limiter) Wait(ctx context.Context, maxWait time.Duration) error {
	start := time.Now()
	pause := l.pauseLeft(start)
	if l.rate.IsZero() {
		switch {
		case pause <= 0:
			return nil
		case pause > maxWait:
			l.obs.ObserveThrottled(true)
			return &tasks.ThrottledError{RetryAfter: pause, Paused: true}
		}
		if err := sleep(ctx, pause); err != nil {
			return err
		}
		l.obs.ObserveWait(time.Since(start))
		return nil
	}

	l.mu.Lock()
	if ahead := len(l.waiters); pause > maxWait || (ahead > 0 && l.expectedWait(start, ahead+1) > maxWait) {
		l.mu.Unlock()
		return l.throttle(ctx, start, pause > maxWait)
	}
	w := &waiter{ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}

	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case <-w.ready:
		l.obs.ObserveWait(time.Since(start))
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	if w.granted { // the permit came as the wait ended
		l.mu.Unlock()
		l.obs.ObserveWait(time.Since(start))
		return nil
	}
	l.remove(w)
	l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	return l.throttle(ctx, now, l.pauseLeft(now) > 0)
}

// throttle sends a job back to asynq. Its return is booked in Redis one
// permit after the return of the job put back before it, by any worker,
// and not before the pause ends, so that put-back jobs come back at the
// rate they can be served rather than together. (The jobs waiting in the
// workers' queues are not booked: they are at most MaxSlotWait of permits,
// and a job back early waits in its slot.)
func (l *Limiter) throttle(ctx context.Context, now time.Time, paused bool) error {
	l.obs.ObserveThrottled(paused)
	earliest := max(l.pauseLeft(now), 0)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	res, err := bookScript.Run(ctx, l.rdb, []string{l.bookKey}, l.rate.interval().Seconds(), earliest.Seconds()).Text()
	l.obs.ObserveRedisCall("book", err)
	delay := earliest
	if secs, perr := strconv.ParseFloat(res, 64); err == nil && perr == nil {
		delay = time.Duration(secs * float64(time.Second))
	}
	// asynq keeps a retry's time in whole seconds, rounded down: without
	// this, a job would come back up to a second before its booking, find
	// the queue full and be booked again at the end.
	delay += asynqRounding
	return &tasks.ThrottledError{RetryAfter: delay, Paused: paused}
}

// expectedWait is when the job at position pos (from 1) of this process's
// queue should get its permit, at the pace it has been getting them.
// l.mu is held.
func (l *Limiter) expectedWait(now time.Time, pos int) time.Duration {
	return max(l.pauseLeft(now), 0) + time.Duration(pos)*l.service
}

// remove takes w out of the queue. l.mu is held.
func (l *Limiter) remove(w *waiter) {
	if i := slices.Index(l.waiters, w); i >= 0 {
		l.waiters = slices.Delete(l.waiters, i, i+1)
	}
}

// dispatch hands out permits to the queued jobs in order: it asks Redis for
// as many as jobs wait and, when none is left, sleeps until the next one is
// due. It is the only caller of Redis for permits in this process.
func (l *Limiter) dispatch(ctx context.Context) {
	defer l.wg.Done()
	want := 1
	for ctx.Err() == nil {
		l.mu.Lock()
		waiting := len(l.waiters)
		l.mu.Unlock()
		if waiting == 0 {
			select {
			case <-l.wake:
			case <-ctx.Done():
			}
			continue
		}
		if d := l.pauseLeft(time.Now()); d > 0 {
			_ = sleep(ctx, d)
			continue
		}
		n := min(want, waiting)
		res, err := l.allow(ctx, n)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				l.log.Warn().Err(err).Msg("rate limit: could not ask redis for permits; retrying")
			}
			want = 1
			_ = sleep(ctx, errorBackoff)
		case res.Allowed > 0:
			l.grant(res.Allowed)
			want = max(1, res.Remaining)
			if res.Remaining == 0 {
				// The next permit is due when the limit's state has moved
				// on by one interval past the burst.
				_ = sleep(ctx, res.ResetAfter-time.Duration(l.rate.Burst()-1)*l.rate.interval())
			}
		case n > 1: // another worker took some: ask for one
			want = 1
		default:
			_ = sleep(ctx, res.RetryAfter)
		}
	}
}

// allow asks for n permits at once; redis_rate's AllowN grants all or none,
// and grants exactly n (its AllowAtMost charges fractions of a permit it
// does not grant).
func (l *Limiter) allow(ctx context.Context, n int) (*redis_rate.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := l.gcra.AllowN(ctx, l.key, l.rate.limit(), n)
	l.obs.ObserveRedisCall("allow", err)
	if err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	return res, nil
}

// grant gives n permits to the jobs at the head of the queue. A permit
// granted while its job left is lost: the dispatcher asks for no more than
// jobs wait.
func (l *Limiter) grant(n int) {
	now := time.Now()
	l.mu.Lock()
	k := min(n, len(l.waiters))
	for _, w := range l.waiters[:k] {
		w.granted = true
		close(w.ready)
	}
	l.waiters = append(l.waiters[:0], l.waiters[k:]...)
	// While jobs kept waiting, the time between grants is this process's
	// share of the limit (the other workers take theirs).
	if l.backlogged && k > 0 {
		sample := now.Sub(l.lastGrant) / time.Duration(k)
		l.service = max(l.rate.interval(), time.Duration((1-serviceWeight)*float64(l.service)+serviceWeight*float64(sample)))
	}
	l.lastGrant, l.backlogged = now, len(l.waiters) > 0
	l.mu.Unlock()
	l.obs.ObservePermits(n)
}

// Pause implements tasks.RateLimiter: this process pauses at once, and the
// pause is written to Redis and announced to every worker.
func (l *Limiter) Pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	l.extendPause(time.Now().Add(d))
	l.obs.ObservePause(false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	err := pauseScript.Run(ctx, l.rdb, []string{l.pauseKey}, d.Milliseconds(), l.pauseKey).Err()
	l.obs.ObserveRedisCall("pause", err)
	if err != nil {
		l.log.Warn().Err(err).Dur("pause_ms", d).Msg("rate limit: could not tell the other workers of the upstream's pause")
	}
}

// listen applies the pauses other workers announce, and reads the pause
// again whenever the subscription is renewed after a lost connection.
func (l *Limiter) listen(ctx context.Context) {
	defer l.wg.Done()
	for msg := range l.pubsub.ChannelWithSubscriptions() {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if err := l.refresh(ctx); err != nil && ctx.Err() == nil {
					l.log.Warn().Err(err).Msg("rate limit: could not read the upstream's pause after reconnecting")
				}
			}
		case *redis.Message:
			ms, err := strconv.ParseInt(m.Payload, 10, 64)
			if err != nil {
				continue
			}
			if l.extendPause(time.Now().Add(time.Duration(ms)*time.Millisecond - peerSlack)) {
				l.obs.ObservePause(true)
			}
		}
	}
}

// refresh reads the pause that Redis holds.
func (l *Limiter) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ttl, err := l.rdb.PTTL(ctx, l.pauseKey).Result()
	l.obs.ObserveRedisCall("refresh", err)
	if err != nil {
		return fmt.Errorf("read upstream pause: %w", err)
	}
	if ttl > 0 {
		l.extendPause(time.Now().Add(ttl))
	}
	return nil
}

// extendPause moves the end of the pause to until if that is later, and
// reports whether it did.
func (l *Limiter) extendPause(until time.Time) bool {
	u := until.UnixNano()
	for {
		cur := l.pausedUntil.Load()
		if u <= cur {
			return false
		}
		if l.pausedUntil.CompareAndSwap(cur, u) {
			return true
		}
	}
}

// pauseLeft is how long the pause still lasts; zero or less when none.
func (l *Limiter) pauseLeft(now time.Time) time.Duration {
	u := l.pausedUntil.Load()
	if u == 0 {
		return 0
	}
	return time.Duration(u - now.UnixNano())
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type nopObserver struct{}

func (nopObserver) ObservePermits(int)             {}
func (nopObserver) ObserveWait(time.Duration)      {}
func (nopObserver) ObserveThrottled(bool)          {}
func (nopObserver) ObservePause(bool)              {}
func (nopObserver) ObserveRedisCall(string, error) {}
