package schedule

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/tasks"
)

// Clock tells the time and waits; tests pass a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Counts are the outcome of one firing.
type Counts struct {
	Enqueued int // tasks this replica enqueued
	// AlreadyEnqueued are tasks another replica had enqueued: a task id
	// conflict, or the whole slot when its marker was found.
	AlreadyEnqueued int
	// Skipped are slots missed since the entry last fired (all replicas
	// were down, or a firing came more than one interval late).
	Skipped int
	Errors  int // tasks that could not be enqueued
}

// Observer records firings (package schedule's Metrics implements it).
type Observer interface {
	ObserveFiring(schedule string, c Counts)
}

// Redis keys. The marker of a slot says that its tasks are all in;
// it outlives the slot's window by markerMargin, so a replica starting late
// never enqueues a slot again after its tasks completed and asynq freed
// their ids. The last key holds the newest slot any replica fired.
const (
	keyPrefix    = "tickerq:schedule:"
	markerMargin = time.Minute
	lastTTL      = 30 * 24 * time.Hour
)

func markerKey(name string, slot time.Time) string {
	return keyPrefix + name + ":slot:" + strconv.FormatInt(slot.Unix(), 10)
}

func lastKey(name string) string { return keyPrefix + name + ":last" }

// TaskID returns the id of the task of entry name for symbol at slot.
func TaskID(name, symbol string, slot time.Time) string {
	return "sched:" + name + ":" + symbol + ":" + strconv.FormatInt(slot.Unix(), 10)
}

// advanceScript moves the last-fired slot forward to ARGV[1] and returns
// the slot it held: -1 if it was already there or later, -2 if there was
// none. Only one replica sees each old value, so skipped slots are counted
// once.
var advanceScript = redis.NewScript(`
local old = redis.call("GET", KEYS[1])
if old and tonumber(old) >= tonumber(ARGV[1]) then
	return -1
end
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
if old then
	return tonumber(old)
end
return -2`)

// Runner fires schedule entries.
type Runner struct {
	Client   *asynq.Client
	Redis    redis.UniversalClient // the same Redis as Client
	Log      zerolog.Logger
	Clock    Clock
	Observer Observer // may be nil
	// Workers is how many enqueues of one slot are in flight (64 if 0).
	Workers int
	// FireTimeout bounds one firing (30s if 0). A firing runs to its end
	// even when the runner is stopped.
	FireTimeout time.Duration
}

// Run fires cfg's entries until ctx is done; a *Config received on reload
// replaces the running one between firings. It returns nil once stopped,
// after the firing in progress has finished.
func (r *Runner) Run(ctx context.Context, cfg *Config, reload <-chan *Config) error {
	fired := map[string]time.Time{} // entry name -> last slot handled here
	for {
		now := r.Clock.Now()
		r.fireDue(ctx, cfg, now, fired)

		now = r.Clock.Now()
		wake, err := nextWake(cfg, now)
		if err != nil {
			r.Log.Error().Err(err).Msg("schedule: no next slot; waiting for a reload")
			wake = now.Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return nil
		case cfg = <-reload:
		case <-r.Clock.After(wake.Sub(now)):
		}
	}
}

// nextWake is the earliest next firing of any entry after now.
func nextWake(cfg *Config, now time.Time) (time.Time, error) {
	var wake time.Time
	for _, e := range cfg.Entries {
		t, err := e.Next(now)
		if err != nil {
			return time.Time{}, err
		}
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	return wake, nil
}

// fireDue fires, concurrently, each entry whose latest slot at or before
// now fires and has not been handled here yet. That slot is less than one
// interval old by construction; older ones are counted as skipped.
func (r *Runner) fireDue(ctx context.Context, cfg *Config, now time.Time, fired map[string]time.Time) {
	var mu sync.Mutex
	var g errgroup.Group
	for _, e := range cfg.Entries {
		slot := e.RawPrev(now)
		if slot.IsZero() || !slot.After(fired[e.Name]) {
			continue
		}
		ok, err := e.Fires(slot)
		if err != nil {
			r.Log.Error().Err(err).Str("schedule", e.Name).Msg("schedule: market calendar")
		}
		fired[e.Name] = slot
		if !ok {
			continue
		}
		g.Go(func() error {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fireTimeout())
			defer cancel()
			began := time.Now()
			c, err := r.Fire(fctx, e, slot)
			mu.Lock()
			defer mu.Unlock()
			r.logFiring(e, slot, c, time.Since(began), err)
			return nil
		})
	}
	_ = g.Wait()
}

func (r *Runner) fireTimeout() time.Duration {
	if r.FireTimeout > 0 {
		return r.FireTimeout
	}
	return 30 * time.Second
}

func (r *Runner) logFiring(e *Entry, slot time.Time, c Counts, took time.Duration, err error) {
	if r.Observer != nil {
		r.Observer.ObserveFiring(e.Name, c)
	}
	ev := r.Log.Info()
	if err != nil || c.Errors > 0 {
		ev = r.Log.Warn().Err(err)
	}
	ev.Str("schedule", e.Name).Str("slot", slot.Format(time.RFC3339)).Int64("slot_unix", slot.Unix()).
		Int("enqueued", c.Enqueued).Int("already_enqueued", c.AlreadyEnqueued).
		Int("skipped", c.Skipped).Int("errors", c.Errors).Dur("duration_ms", took).Msg("schedule fired")
}

// ErrFire is wrapped by Fire's error when some tasks were not enqueued.
var ErrFire = errors.New("firing incomplete")

// Fire enqueues entry e's tasks for slot, unless another replica already
// did, and counts the slots skipped since the entry last fired.
func (r *Runner) Fire(ctx context.Context, e *Entry, slot time.Time) (Counts, error) {
	var c Counts
	marker := markerKey(e.Name, slot)
	n, err := r.Redis.Exists(ctx, marker).Result()
	if err != nil {
		return Counts{Errors: len(e.Symbols)}, fmt.Errorf("%w: check marker: %w", ErrFire, err)
	}
	if n > 0 {
		return Counts{AlreadyEnqueued: len(e.Symbols)}, nil
	}
	if c.Skipped, err = r.advance(ctx, e, slot); err != nil {
		r.Log.Warn().Err(err).Str("schedule", e.Name).Msg("schedule: count skipped slots")
	}

	deadline := e.RawNext(slot)
	opts := e.options()
	results := make([]error, len(e.Symbols))
	var g errgroup.Group
	g.SetLimit(r.workers())
	for i, sym := range e.Symbols {
		g.Go(func() error {
			results[i] = r.enqueue(ctx, e, sym, slot, deadline, opts)
			return nil
		})
	}
	_ = g.Wait()
	var first error
	for _, err := range results {
		switch {
		case err == nil:
			c.Enqueued++
		case errors.Is(err, asynq.ErrTaskIDConflict):
			c.AlreadyEnqueued++
		default:
			c.Errors++
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		// No marker: a replica yet to fire this slot fills the gaps.
		return c, fmt.Errorf("%w: %d of %d tasks (first: %w)", ErrFire, c.Errors, len(e.Symbols), first)
	}
	expire := deadline.Add(markerMargin)
	if err := r.Redis.SetArgs(ctx, marker, "1", redis.SetArgs{ExpireAt: expire}).Err(); err != nil {
		return c, fmt.Errorf("%w: set marker: %w", ErrFire, err)
	}
	return c, nil
}

func (r *Runner) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return 64
}

func (r *Runner) enqueue(ctx context.Context, e *Entry, sym string, slot, deadline time.Time, opts []asynq.Option) error {
	all := append([]asynq.Option{asynq.TaskID(TaskID(e.Name, sym, slot))}, opts...)
	task, err := tasks.NewQuoteFetchTaskWithDeadline(sym, deadline, all...)
	if err != nil {
		return err
	}
	_, err = r.Client.EnqueueContext(ctx, task)
	return err
}

// advance records slot as the entry's last fired slot and returns how many
// slots were skipped since the previous one, if this replica moved it.
func (r *Runner) advance(ctx context.Context, e *Entry, slot time.Time) (int, error) {
	ttl := max(lastTTL, 2*e.Interval(slot))
	old, err := advanceScript.Run(ctx, r.Redis, []string{lastKey(e.Name)}, slot.Unix(), int64(ttl/time.Second)).Int64()
	if err != nil {
		return 0, fmt.Errorf("advance last slot: %w", err)
	}
	if old < 0 {
		return 0, nil
	}
	return e.CountBetween(time.Unix(old, 0), slot)
}

// options are the entry's asynq task options.
func (e *Entry) options() []asynq.Option {
	opts := []asynq.Option{asynq.Queue(e.Queue), asynq.Retention(e.Retention)}
	if e.MaxRetry > 0 {
		opts = append(opts, asynq.MaxRetry(e.MaxRetry))
	}
	if e.Timeout > 0 {
		opts = append(opts, asynq.Timeout(e.Timeout))
	}
	return opts
}
