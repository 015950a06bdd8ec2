package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/tasks"
)

// DefaultWorkers is how many enqueues Enqueue keeps in flight when the
// caller passes workers <= 0.
const DefaultWorkers = 64

// DefaultQueue is asynq's queue when no asynq.Queue option is given.
const DefaultQueue = "default"

// ErrEnqueue is returned, wrapped, when some tasks could not be enqueued
// or may not have been.
var ErrEnqueue = errors.New("tasks not enqueued")

// ErrNotAttempted is the error of a symbol Enqueue did not try, because an
// earlier one lost the connection to Redis or ctx was done.
var ErrNotAttempted = errors.New("not attempted")

// EnqueueOutcome is what became of one symbol.
type EnqueueOutcome int

// The outcomes of Enqueue.
const (
	// Enqueued: the task is in Redis under Result.ID.
	Enqueued EnqueueOutcome = iota
	// AlreadyEnqueued: a task with the same ID (EnqueueConfig.IDPrefix)
	// exists, so none was added (asynq.ErrTaskIDConflict).
	AlreadyEnqueued
	// Skipped: a unique task for the symbol exists (asynq.Unique,
	// asynq.ErrDuplicateTask).
	Skipped
	// Failed: the task certainly was not enqueued: it was not tried, no
	// connection could be made, or Redis answered with an error.
	Failed
	// Unknown: the connection was lost mid-call; the task may exist.
	Unknown
)

var outcomeNames = [...]string{"enqueued", "already enqueued", "skipped", "failed", "unknown"}

func (o EnqueueOutcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("EnqueueOutcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// Result is the outcome of enqueueing one symbol.
type Result struct {
	ID      string         // task ID; empty unless enqueued, or when IDPrefix gives it
	Symbol  string         // symbol as passed to Enqueue
	Queue   string         // queue the task went to, or would have
	Outcome EnqueueOutcome // what became of it
	Err     error          // nil if enqueued; wraps asynq.ErrDuplicateTask if skipped
}

// Skipped reports whether the task was not enqueued because a unique task
// for the same symbol already exists (see asynq.Unique).
func (r Result) Skipped() bool { return errors.Is(r.Err, asynq.ErrDuplicateTask) }

// EnqueueConfig is how EnqueueAll enqueues.
type EnqueueConfig struct {
	// Options are given to every task.
	Options []asynq.Option
	// Workers is how many enqueues are kept in flight (DefaultWorkers if
	// <= 0).
	Workers int
	// IDPrefix, if set, gives each task the ID TaskID(IDPrefix, symbol), so
	// that enqueueing a symbol again reports AlreadyEnqueued while the first
	// task is retained, instead of adding a second one. Check it with
	// CheckIDPrefix.
	IDPrefix string
	// Each, if not nil, is called with every symbol's Result as soon as it
	// is known (to show progress), from several goroutines at once; it must
	// not block for long.
	Each func(Result)
	// Reconnect, if not nil, is called after a lost connection instead of
	// giving up on the symbols not yet tried. It should return once Redis
	// answers again (nil) or it gives up (an error). Meanwhile no enqueue
	// starts; after it returns nil, the symbols not yet tried are enqueued,
	// and so is again a symbol whose call certainly did not reach Redis
	// (Failed), or, with an IDPrefix, whose outcome was Unknown (a retry
	// then reports AlreadyEnqueued if the first call did create it). It is
	// meant for a redis-sentinel:// client, which reaches the new master
	// once the sentinels have promoted one.
	Reconnect func(context.Context) error
}

// maxAttempts bounds the calls for one symbol when Reconnect is set.
const maxAttempts = 3

// Enqueue enqueues one tasks.TypeQuoteFetch task per symbol with opts,
// keeping up to workers enqueues in flight (DefaultWorkers if workers <= 0).
// Results are in input order. See EnqueueAll.
func Enqueue(ctx context.Context, client *asynq.Client, symbols []string, opts []asynq.Option, workers int) ([]Result, error) {
	return EnqueueAll(ctx, client, symbols, EnqueueConfig{Options: opts, Workers: workers})
}

// EnqueueEach is Enqueue that also calls each, if not nil, with every
// symbol's Result as soon as it is known (see EnqueueConfig.Each).
func EnqueueEach(ctx context.Context, client *asynq.Client, symbols []string, opts []asynq.Option, workers int, each func(Result)) ([]Result, error) {
	return EnqueueAll(ctx, client, symbols, EnqueueConfig{Options: opts, Workers: workers, Each: each})
}

// EnqueueAll enqueues one tasks.TypeQuoteFetch task per symbol as cfg says
// and returns one Result per symbol, in input order.
//
// Repeats of a symbol are enqueued one after another in input order, so
// under asynq.Unique the first goes in and the later ones are Skipped (and
// with an IDPrefix, AlreadyEnqueued); neither is an error. A symbol whose
// call fails is Failed when the task certainly was not created, Unknown
// when the connection was lost mid-call. Telling the two apart needs a
// client made with asynq.NewClientFromRedisClient over NewRedisClient;
// with any other client every error from Redis is Unknown. After the first
// lost connection, and once ctx is done, no more symbols are tried: they
// are Failed with ErrNotAttempted. EnqueueAll returns an error wrapping
// ErrEnqueue if any symbol is Failed or Unknown. With cfg.Reconnect, a lost
// connection pauses the enqueues until it returns instead (see
// EnqueueConfig.Reconnect).
func EnqueueAll(ctx context.Context, client *asynq.Client, symbols []string, cfg EnqueueConfig) ([]Result, error) {
	workers := cfg.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	e := enqueuer{client: client, opts: cfg.Options, queue: queueOf(cfg.Options), idPrefix: cfg.IDPrefix, reconnect: cfg.Reconnect}
	results := make([]Result, len(symbols))

	next, repeat := chains(symbols)

	var g errgroup.Group // not WithContext: one failure must not stop the rest
	g.SetLimit(workers)
	for i := range symbols {
		if repeat[i] {
			continue
		}
		chain := func() error {
			for j := i; j >= 0; j = next[j] {
				results[j] = e.one(ctx, symbols[j])
				if cfg.Each != nil {
					cfg.Each(results[j])
				}
			}
			return nil
		}
		if ctx.Err() != nil || e.broken.Load() {
			_ = chain() // fails at once; no need for a goroutine
			continue
		}
		g.Go(chain)
	}
	_ = g.Wait() // the chains report through results

	var failed, unknown int
	var first *Result
	for i := range results {
		if r := &results[i]; r.Outcome == Failed || r.Outcome == Unknown {
			if r.Outcome == Failed {
				failed++
			} else {
				unknown++
			}
			if first == nil {
				first = r
			}
		}
	}
	if first != nil {
		return results, fmt.Errorf("%w: %d of %d (%d failed, %d unknown; first: %s: %w)",
			ErrEnqueue, failed+unknown, len(symbols), failed, unknown, first.Symbol, first.Err)
	}
	return results, nil
}

// NotAttempted is EnqueueAll's account when no symbol could be tried at
// all, because of cause (Redis did not answer before the first call, say):
// every symbol Failed, its error wrapping ErrNotAttempted and cause, bound
// for the queue that opts name.
func NotAttempted(symbols []string, opts []asynq.Option, cause error) []Result {
	q := queueOf(opts)
	results := make([]Result, len(symbols))
	for i, sym := range symbols {
		results[i] = Result{Symbol: sym, Queue: q, Outcome: Failed, Err: fmt.Errorf("%w: %w", ErrNotAttempted, cause)}
	}
	return results
}

// enqueuer enqueues the symbols of one EnqueueAll.
type enqueuer struct {
	client    *asynq.Client
	opts      []asynq.Option
	queue     string
	idPrefix  string
	reconnect func(context.Context) error
	broken    atomic.Bool // a connection was lost or refused: try no more

	// paused is held shared by each call and exclusively while
	// reconnecting, so that no call starts against a Redis known to be
	// gone. gen counts the reconnects, so that the calls that lost the
	// same connection reconnect once.
	paused sync.RWMutex
	gen    uint64
}

// one enqueues sym, again after a reconnect while that is safe: when the
// call certainly did not reach Redis, or when the task ID makes a second
// call harmless.
func (e *enqueuer) one(ctx context.Context, sym string) (r Result) {
	// One span for all the attempts: every one carries the same trace
	// context, so whichever task got in continues this trace.
	ctx, span := StartEnqueueSpan(ctx, e.queue, sym)
	defer func() { EndEnqueueSpan(span, r.ID, spanOutcome(r.Outcome), r.Err) }()
	for attempt := 1; ; attempt++ {
		e.paused.RLock()
		gen := e.gen
		r, lost := e.try(ctx, sym)
		e.paused.RUnlock()
		if !lost {
			return r
		}
		if e.reconnect == nil {
			e.broken.Store(true)
			return r
		}
		again := r.Outcome == Failed || (r.Outcome == Unknown && e.idPrefix != "")
		if !e.recover(ctx, gen) || !again || attempt == maxAttempts {
			return r
		}
	}
}

// recover calls reconnect, unless another call did since gen, and reports
// whether Redis answers again; if not, no more symbols are tried.
func (e *enqueuer) recover(ctx context.Context, gen uint64) bool {
	e.paused.Lock()
	defer e.paused.Unlock()
	switch {
	case e.broken.Load():
		return false
	case e.gen != gen:
		return true
	}
	if err := e.reconnect(ctx); err != nil {
		e.broken.Store(true)
		return false
	}
	e.gen++
	return true
}

// try makes one call for sym; lost reports that the connection to Redis
// was lost or refused.
func (e *enqueuer) try(ctx context.Context, sym string) (r Result, lost bool) {
	r = Result{Symbol: sym, Queue: e.queue, Outcome: Failed}
	if err := ctx.Err(); err != nil {
		r.Err = fmt.Errorf("%w: %w", ErrNotAttempted, err)
		return r, false
	}
	if e.broken.Load() {
		r.Err = fmt.Errorf("%w: the connection to redis was lost earlier", ErrNotAttempted)
		return r, false
	}
	opts := e.opts
	if e.idPrefix != "" {
		norm, err := tasks.NormalizeSymbol(sym)
		if err != nil {
			r.Err = err
			return r, false
		}
		r.ID = TaskID(e.idPrefix, norm)
		opts = append(opts[:len(opts):len(opts)], asynq.TaskID(r.ID))
	}
	task, err := tasks.NewQuoteFetchTaskContext(ctx, sym, opts...)
	if err != nil {
		r.Err = err
		return r, false
	}
	callCtx, rec := withRecord(ctx)
	info, err := e.client.EnqueueContext(callCtx, task)
	switch {
	case err == nil:
		r.ID, r.Queue, r.Outcome = info.ID, info.Queue, Enqueued
	case errors.Is(err, asynq.ErrTaskIDConflict):
		r.Outcome, r.Err = AlreadyEnqueued, err
	case errors.Is(err, asynq.ErrDuplicateTask):
		r.Outcome, r.Err = Skipped, err
	default:
		r.Outcome, r.Err = classify(rec, err), err
		lost = connectionLost(rec)
	}
	return r, lost
}

// classify tells from what one enqueue sent whether its error certainly
// means no task was created.
func classify(rec *callRecord, err error) EnqueueOutcome {
	sent, cmd, last := rec.last()
	switch {
	case sent == 0:
		// Nothing reached go-redis: asynq refused the task (or the client
		// has no recordHook, and then err says nothing certain).
		if errors.Is(err, redis.ErrClosed) || !isRedisTrouble(err) {
			return Failed
		}
		return Unknown
	case last == nil:
		// Every command succeeded and asynq still failed: it did not like
		// a reply. Whatever it was, the script may have run.
		return Unknown
	case cmd == "sadd":
		// asynq registers the queue before it runs the enqueue script: if
		// that fails, the script was never sent.
		return Failed
	case notSent(last):
		return Failed
	default:
		return Unknown
	}
}

// connectionLost reports whether the last command of rec ended without an
// answer from Redis: further commands would likely fail the same way.
func connectionLost(rec *callRecord) bool {
	sent, _, last := rec.last()
	if sent == 0 || last == nil {
		return false
	}
	var reply redis.Error
	return !errors.As(last, &reply)
}

// isRedisTrouble reports whether err looks like it came from talking to
// Redis, as asynq words such errors, when no command was recorded.
func isRedisTrouble(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "redis") || strings.Contains(msg, "connection") || errors.Is(err, io.EOF)
}

// MaxIDPrefixLen is the longest --id-prefix CheckIDPrefix accepts.
const MaxIDPrefixLen = 64

var idPrefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// CheckIDPrefix reports whether p can prefix task IDs: 1 to
// MaxIDPrefixLen letters, digits, '.', '_' and '-', in parts joined by ':';
// not starting with "sched:", the prefix of the scheduler's IDs.
func CheckIDPrefix(p string) error {
	switch {
	case p == "" || len(p) > MaxIDPrefixLen:
		return fmt.Errorf("id prefix %q: want 1 to %d characters", p, MaxIDPrefixLen)
	case !idPrefixRE.MatchString(p):
		return fmt.Errorf("id prefix %q: want letters, digits, '.', '_' and '-', in parts joined by ':'", p)
	case p == "sched" || strings.HasPrefix(p, "sched:"):
		return fmt.Errorf("id prefix %q: sched: is kept for the scheduler's task IDs", p)
	}
	return nil
}

// TaskID is the ID of symbol's task under prefix: prefix ":" symbol. symbol
// must be normalized (tasks.NormalizeSymbol).
func TaskID(prefix, symbol string) string { return prefix + ":" + symbol }

// chains links each symbol to its next occurrence (next[i], or -1) and marks
// every occurrence after the first as a repeat. Symbols are compared
// normalized.
func chains(symbols []string) (next []int, repeat []bool) {
	next = make([]int, len(symbols))
	repeat = make([]bool, len(symbols))
	last := make(map[string]int, len(symbols))
	for i, sym := range symbols {
		next[i] = -1
		key, err := tasks.NormalizeSymbol(sym)
		if err != nil {
			key = sym
		}
		if prev, ok := last[key]; ok {
			next[prev] = i
			repeat[i] = true
		}
		last[key] = i
	}
	return next, repeat
}

// queueOf returns the queue named by the last asynq.Queue option in opts.
func queueOf(opts []asynq.Option) string {
	q := DefaultQueue
	for _, o := range opts {
		if o.Type() == asynq.QueueOpt {
			if name, ok := o.Value().(string); ok {
				q = name
			}
		}
	}
	return q
}

// UnservedWarning returns why tasks put in queue will wait although they are
// due: no worker among servers (asynq.Inspector.Servers) is active, or none
// of the active ones takes tasks from queue. It returns "" when some active
// worker serves queue.
func UnservedWarning(servers []*asynq.ServerInfo, queue string) string {
	if ServedBy(servers, queue) > 0 {
		return ""
	}
	served := map[string]bool{}
	active := 0
	for _, s := range servers {
		if running(s) {
			active++
			for q := range s.Queues {
				served[q] = true
			}
		}
	}
	if active == 0 {
		return fmt.Sprintf("no worker is running: the tasks wait in queue %s until one serves it", queue)
	}
	return fmt.Sprintf("%s (%d running serve %s): the tasks wait until one does",
		unserved("queue "+queue), active, strings.Join(slices.Sorted(maps.Keys(served)), ", "))
}
