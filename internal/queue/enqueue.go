package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/tickerq/tickerq/tasks"
)

// DefaultWorkers is how many enqueues Enqueue keeps in flight when the
// caller passes workers <= 0.
const DefaultWorkers = 64

// DefaultQueue is asynq's queue when no asynq.Queue option is given.
const DefaultQueue = "default"

// ErrEnqueue is returned, wrapped, when some tasks could not be enqueued.
var ErrEnqueue = errors.New("tasks not enqueued")

// Result is the outcome of enqueueing one symbol.
type Result struct {
	ID     string // task ID; empty unless enqueued
	Symbol string // symbol as passed to Enqueue
	Queue  string // queue the task went to, or would have
	Err    error  // nil if enqueued; wraps asynq.ErrDuplicateTask if skipped
}

// Skipped reports whether the task was not enqueued because a unique task
// for the same symbol already exists (see asynq.Unique).
func (r Result) Skipped() bool { return errors.Is(r.Err, asynq.ErrDuplicateTask) }

// Enqueue enqueues one tasks.TypeQuoteFetch task per symbol with opts,
// keeping up to workers enqueues in flight (DefaultWorkers if workers <= 0).
// Results are in input order.
//
// Repeats of a symbol are enqueued one after another in input order, so
// under asynq.Unique the first goes in and the later ones are reported as
// skipped (Result.Skipped); a skip is not an error. Any other failure is
// recorded in its Result too, the remaining symbols are still enqueued, and
// Enqueue then returns an error wrapping ErrEnqueue. Once ctx is done no
// more tasks are enqueued.
func Enqueue(ctx context.Context, client *asynq.Client, symbols []string, opts []asynq.Option, workers int) ([]Result, error) {
	return EnqueueEach(ctx, client, symbols, opts, workers, nil)
}

// EnqueueEach is Enqueue that also calls each, if not nil, with every
// symbol's Result as soon as it is known (to show progress). each is called
// from several goroutines at once and must not block for long.
func EnqueueEach(ctx context.Context, client *asynq.Client, symbols []string, opts []asynq.Option, workers int, each func(Result)) ([]Result, error) {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	queue := queueOf(opts)
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
				results[j] = enqueueOne(ctx, client, symbols[j], queue, opts)
				if each != nil {
					each(results[j])
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			_ = chain() // fails at once; no need for a goroutine
			continue
		}
		g.Go(chain)
	}
	_ = g.Wait() // the chains report through results

	var failed int
	var first *Result
	for i := range results {
		if r := &results[i]; r.Err != nil && !r.Skipped() {
			failed++
			if first == nil {
				first = r
			}
		}
	}
	if failed > 0 {
		return results, fmt.Errorf("%w: %d of %d (first: %s: %w)", ErrEnqueue, failed, len(symbols), first.Symbol, first.Err)
	}
	return results, nil
}

func enqueueOne(ctx context.Context, client *asynq.Client, sym, queue string, opts []asynq.Option) Result {
	r := Result{Symbol: sym, Queue: queue}
	if err := ctx.Err(); err != nil {
		r.Err = err
		return r
	}
	task, err := tasks.NewQuoteFetchTask(sym, opts...)
	if err != nil {
		r.Err = err
		return r
	}
	info, err := client.EnqueueContext(ctx, task)
	if err != nil {
		r.Err = err
		return r
	}
	r.ID, r.Queue = info.ID, info.Queue
	return r
}

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
	served := map[string]bool{}
	active := 0
	for _, s := range servers {
		if s.Status != "active" { // "stopped": fetches nothing until it exits
			continue
		}
		active++
		if _, ok := s.Queues[queue]; ok {
			return ""
		}
		for q := range s.Queues {
			served[q] = true
		}
	}
	if active == 0 {
		return fmt.Sprintf("no worker is running: the tasks wait in queue %s until one serves it", queue)
	}
	return fmt.Sprintf("no running worker serves queue %s (%d running serve %s): the tasks wait until one does",
		queue, active, strings.Join(slices.Sorted(maps.Keys(served)), ", "))
}
