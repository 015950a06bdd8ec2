package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/internal/queue"
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
	// Skipped are slots missed since the entry last fired: no replica
	// began them within their misfire_grace (all were down, or each
	// started or woke too late).
	Skipped int
	Errors  int // tasks that could not be enqueued
}

// Observer records firings (package schedule's Metrics implements it).
type Observer interface {
	ObserveFiring(schedule string, c Counts)
}

// Redis keys. The marker of a slot says that its tasks are all in; it
// lives until the slot's successor is due plus markerMargin (for clock
// skew between replicas), however short the tasks' retention, so a replica
// starting late never enqueues a slot again after its tasks completed and
// asynq freed their ids. The last key holds the newest slot any replica fired.
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

// Run fires cfg's entries until ctx is done, each entry in a loop of its
// own, so that a slow firing or an entry without a next slot never delays
// another. A *Config received on reload replaces the loops of the entries
// it changes or removes and starts those of new ones; the loop of an
// unchanged entry runs on. Run returns nil once stopped, after the firings
// in progress have finished.
func (r *Runner) Run(ctx context.Context, cfg *Config, reload <-chan *Config) error {
	loops := map[string]*entryLoop{}
	r.apply(ctx, loops, cfg)
	for {
		select {
		case <-ctx.Done():
			r.apply(ctx, loops, &Config{})
			return nil
		case cfg = <-reload:
			r.apply(ctx, loops, cfg)
		}
	}
}

// entryLoop is the goroutine that fires one entry.
type entryLoop struct {
	entry  *Entry
	cancel context.CancelFunc
	done   chan struct{}
	last   time.Time // the last slot it handled; read once done is closed
}

// apply makes loops run cfg's entries: it stops, all at once, the loops of
// entries cfg changes or lacks, waits for their firings to finish, then
// starts loops for the entries without one. A changed entry's new loop
// takes over the slot its old one handled last, so no slot fires twice.
func (r *Runner) apply(ctx context.Context, loops map[string]*entryLoop, cfg *Config) {
	want := make(map[string]*Entry, len(cfg.Entries))
	for _, e := range cfg.Entries {
		want[e.Name] = e
	}
	var stopping []*entryLoop
	for name, l := range loops {
		if e := want[name]; e != nil && l.entry.same(e) {
			continue
		}
		l.cancel()
		stopping = append(stopping, l)
		delete(loops, name)
	}
	last := map[string]time.Time{}
	for _, l := range stopping {
		<-l.done
		last[l.entry.Name] = l.last
	}
	for _, e := range cfg.Entries {
		if loops[e.Name] != nil {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &entryLoop{entry: e, cancel: cancel, done: make(chan struct{})}
		loops[e.Name] = l
		go func() {
			defer close(l.done)
			l.last = r.runEntry(lctx, e, last[e.Name])
		}()
	}
}

// runEntry fires e at its slots until ctx is done and returns the last
// slot it handled; last is the one handled before. An entry without a next
// slot (its market's calendar ends, say) is logged and waits for ctx.
func (r *Runner) runEntry(ctx context.Context, e *Entry, last time.Time) time.Time {
	for {
		last = r.fireDue(ctx, e, r.Clock.Now(), last)
		now := r.Clock.Now()
		next, err := e.Next(now)
		if err != nil {
			r.Log.Error().Err(err).Str("schedule", e.Name).Msg("schedule: no next slot; this entry is off until a reload")
			<-ctx.Done()
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-r.Clock.After(next.Sub(now)):
		}
	}
}

// same reports whether two checked entries fire the same tasks at the same
// slots, within the same grace.
func (e *Entry) same(o *Entry) bool {
	return e.Name == o.Name && e.Cron == o.Cron && e.Every == o.Every && e.MarketCode == o.MarketCode &&
		slices.Equal(e.Symbols, o.Symbols) && e.Queue == o.Queue && e.MaxRetry == o.MaxRetry &&
		e.Timeout == o.Timeout && e.Retention == o.Retention && e.Location.String() == o.Location.String() &&
		e.MisfireGrace == o.MisfireGrace
}

// fireDue fires e's latest slot at or before now unless it is not after
// last, the slot handled before, and returns the slot now handled. That
// slot is less than one interval old by construction. It fires only if
// now is within its misfire_grace (Entry.Missed): else it is left and
// logged (logMissed) and, unless a replica began it in time, counted as
// skipped, with any older ones, by whichever replica fires the entry next
// (advance). The grace bounds when a firing begins, not how long it runs:
// a firing retries while its slot is current (see Fire), and runs to its
// end even when ctx is done.
func (r *Runner) fireDue(ctx context.Context, e *Entry, now, last time.Time) time.Time {
	slot := e.RawPrev(now)
	if slot.IsZero() || !slot.After(last) {
		return last
	}
	ok, err := e.Fires(slot)
	if err != nil {
		r.Log.Error().Err(err).Str("schedule", e.Name).Msg("schedule: market calendar")
	}
	if !ok {
		return slot
	}
	if e.Missed(slot, now) {
		r.logMissed(ctx, e, slot, now)
		return slot
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fireTimeout())
	defer cancel()
	began := time.Now()
	c, err := r.Fire(fctx, e, slot)
	r.logFiring(e, slot, c, time.Since(began), err)
	return slot
}

// lastTimeout bounds logMissed's look at the last fired slot.
const lastTimeout = 5 * time.Second

// logMissed logs that this replica leaves slot, which it came to more than
// the slot's grace late: as skipped unless the entry's last fired slot
// says that a replica began it (or a later one) in time, which a replica
// started the day after a daily slot fired typically finds, and which is
// logged at debug level only.
func (r *Runner) logMissed(ctx context.Context, e *Entry, slot, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, lastTimeout)
	defer cancel()
	last, err := r.Redis.Get(lctx, lastKey(e.Name)).Int64()
	ev, msg := r.Log.Info(), "schedule: slot skipped: more than misfire_grace late"
	if err == nil && last >= slot.Unix() {
		ev, msg = r.Log.Debug(), "schedule: slot more than misfire_grace late, but a replica already fired it"
	}
	ev.Str("schedule", e.Name).Str("slot", slot.Format(time.RFC3339)).Int64("slot_unix", slot.Unix()).
		Dur("late_ms", now.Sub(slot)).Dur("misfire_grace_ms", e.Grace(slot)).Msg(msg)
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

// Backoff between Fire's attempts.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
)

// Fire enqueues entry e's tasks for slot, unless another replica already
// did, and counts the slots skipped since the entry last fired. What fails
// (Redis unreachable for a moment, say) is tried again with backoff while
// the slot is current: until ctx is done or the slot's successor is due.
// The slot's marker is written only once every symbol is in; on giving up
// the error wraps ErrFire and the counts say how many tasks are missing.
func (r *Runner) Fire(ctx context.Context, e *Entry, slot time.Time) (Counts, error) {
	f := &firing{r: r, e: e, slot: slot, deadline: e.RawNext(slot), pending: e.Symbols}
	wait := retryMin
	for attempt := 1; ; attempt++ {
		err := f.attempt(ctx)
		if err == nil {
			return f.c, nil
		}
		if now := r.Clock.Now(); ctx.Err() != nil || !now.Add(wait).Before(f.deadline) {
			f.c.Errors = len(f.pending)
			return f.c, fmt.Errorf("%w after %d attempts: %w", ErrFire, attempt, err)
		}
		r.Log.Warn().Err(err).Str("schedule", e.Name).Int64("slot_unix", slot.Unix()).
			Int("attempt", attempt).Dur("retry_in", wait).Msg("schedule: firing failed; retrying")
		select {
		case <-ctx.Done():
		case <-r.Clock.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// firing is the state of one Fire across its attempts.
type firing struct {
	r        *Runner
	e        *Entry
	slot     time.Time
	deadline time.Time // the slot's successor
	checked  bool      // the marker was found absent
	pending  []string  // symbols not yet enqueued
	c        Counts
}

// attempt checks the slot's marker (until once found absent), enqueues the
// pending symbols and, once none is left, writes the marker.
func (f *firing) attempt(ctx context.Context) error {
	r, e := f.r, f.e
	marker := markerKey(e.Name, f.slot)
	if !f.checked {
		n, err := r.Redis.Exists(ctx, marker).Result()
		if err != nil {
			return fmt.Errorf("check marker: %w", err)
		}
		if n > 0 {
			f.c, f.pending = Counts{AlreadyEnqueued: len(e.Symbols)}, nil
			return nil
		}
		f.checked = true
		if f.c.Skipped, err = r.advance(ctx, e, f.slot); err != nil {
			r.Log.Warn().Err(err).Str("schedule", e.Name).Msg("schedule: count skipped slots")
		}
	}
	if len(f.pending) > 0 {
		opts := e.options()
		results := make([]error, len(f.pending))
		var g errgroup.Group
		g.SetLimit(r.workers())
		for i, sym := range f.pending {
			g.Go(func() error {
				results[i] = r.enqueue(ctx, e, sym, f.slot, f.deadline, opts)
				return nil
			})
		}
		_ = g.Wait()
		var failed []string
		var first error
		for i, err := range results {
			switch {
			case err == nil:
				f.c.Enqueued++
			case errors.Is(err, asynq.ErrTaskIDConflict):
				f.c.AlreadyEnqueued++
			default:
				failed = append(failed, f.pending[i])
				if first == nil {
					first = err
				}
			}
		}
		f.pending = failed
		if first != nil {
			return fmt.Errorf("%d of %d tasks (first: %w)", len(failed), len(e.Symbols), first)
		}
	}
	// The marker lives until the slot's successor is due, whatever the
	// tasks' retention: until then a replica may still take the slot as
	// current.
	expire := f.deadline.Add(markerMargin)
	if err := r.Redis.SetArgs(ctx, marker, "1", redis.SetArgs{ExpireAt: expire}).Err(); err != nil {
		return fmt.Errorf("set marker: %w", err)
	}
	return nil
}

func (r *Runner) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return 64
}

func (r *Runner) enqueue(ctx context.Context, e *Entry, sym string, slot, deadline time.Time, opts []asynq.Option) (err error) {
	id := TaskID(e.Name, sym, slot)
	ctx, span := queue.StartEnqueueSpan(ctx, e.Queue, sym, attrSchedule.String(e.Name))
	defer func() { queue.EndEnqueueSpan(span, id, spanOutcome(err), err) }()
	all := append([]asynq.Option{asynq.TaskID(id)}, opts...)
	task, err := tasks.NewQuoteFetchTaskWithDeadlineContext(ctx, sym, deadline, all...)
	if err != nil {
		return err
	}
	_, err = r.Client.EnqueueContext(ctx, task)
	return err
}

// attrSchedule names the entry whose firing enqueued a task.
const attrSchedule = attribute.Key("tickerq.schedule")

// spanOutcome is the enqueue span's outcome word for a firing's enqueue
// error: the scheduler does not tell a lost reply from a refused call.
func spanOutcome(err error) string {
	switch {
	case err == nil:
		return "enqueued"
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return "already_enqueued"
	default:
		return "failed"
	}
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
	opts := []asynq.Option{asynq.Queue(e.Queue), asynq.Retention(e.Retention), asynq.MaxRetry(e.MaxRetry)}
	if e.Timeout > 0 {
		opts = append(opts, asynq.Timeout(e.Timeout))
	}
	return opts
}
