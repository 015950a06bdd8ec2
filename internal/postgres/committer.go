package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/tasks"
)

// ErrCommitterClosed is returned by SavePrice once Close has begun.
var ErrCommitterClosed = errors.New("committer closed")

// Committer defaults.
const (
	// DefaultMaxBatch caps the rows of one batch transaction.
	DefaultMaxBatch = 500
	// DefaultMaxDelay caps how long a row waits for companions (see
	// CommitterConfig.MaxDelay).
	DefaultMaxDelay = 20 * time.Millisecond
	// DefaultFlushTimeout bounds one batch transaction.
	DefaultFlushTimeout = 10 * time.Second
)

// BatchObserver receives the committer's measurements; package metrics
// implements it. Its methods must be safe for concurrent use and fast.
type BatchObserver interface {
	// ObserveFlush records one batch transaction of rows rows that took d;
	// err is nil when it committed.
	ObserveFlush(rows int, d time.Duration, err error)
	// ObserveCommitWait records how long one SavePrice waited for the
	// transaction holding its row.
	ObserveCommitWait(d time.Duration)
	// ObserveRejectedRow records a row the database refused for its data,
	// found row by row after its batch failed.
	ObserveRejectedRow()
}

// CommitterConfig configures NewCommitter. Zero values take the defaults.
type CommitterConfig struct {
	// Flushers is how many batches may be written at once, each in its own
	// transaction on its own pooled connection. Default: the pool's size
	// less one spare connection (for /readyz), at least 1.
	Flushers int
	// MaxBatch caps the rows of one batch. Default DefaultMaxBatch.
	MaxBatch int
	// MaxDelay caps how long a row waits for other rows to share its
	// transaction: while rows arrive less than MaxDelay apart, a batch
	// goes when its oldest row has waited MaxDelay or it holds ReadyRows;
	// rows that arrive further apart go at once. Default DefaultMaxDelay.
	MaxDelay time.Duration
	// ReadyRows is the size at which a batch goes without waiting out
	// MaxDelay. The worker sets half its concurrency, so that jobs waiting
	// for one batch never hold most of its slots. Default MaxBatch.
	ReadyRows int
	// MaxPending caps the rows held at once, waiting or being written; past
	// it SavePrice waits for room (back-pressure) instead of growing
	// memory. Default Flushers × MaxBatch × 2.
	MaxPending int
	// FlushTimeout bounds one batch transaction. Default DefaultFlushTimeout.
	FlushTimeout time.Duration
	// Observer, when set, receives the measurements.
	Observer BatchObserver
}

// Committer group-commits price writes: the rows of all concurrent
// SavePrice calls share a few transactions on a few connections. A batch
// is written as soon as a flusher (a connection) is free, with the rows
// waiting, up to MaxBatch; while rows arrive close together, a row waits
// at most MaxDelay for companions, and a lone row goes at once. Batches
// thus grow with the load, and a row never waits longer than MaxDelay
// plus the flushes ahead of it. SavePrice returns only once the
// transaction holding its row has committed.
//
// One goroutine owns the queue of waiting rows; each batch is written by a
// goroutine of its own, at most Flushers at once. Close stops taking rows,
// writes what is held and waits for the writes. It is safe for concurrent
// use.
type Committer struct {
	db  *DB
	cfg CommitterConfig
	obs BatchObserver

	reqs    chan *saveRequest // unbuffered: a send succeeds only while run takes rows
	closing chan struct{}     // closed by Close
	done    chan struct{}     // closed when run returns
	// flushCtx is every flush's parent; cancelled when Close gives up.
	flushCtx    context.Context
	cancelFlush context.CancelFunc
	closeOnce   sync.Once
	held        atomic.Int64 // rows queued or being written, for Pending
}

// saveRequest is one SavePrice call waiting for its commit.
type saveRequest struct {
	ctx    context.Context
	queued time.Time
	taskID string
	quote  tasks.Quote
	res    chan saveResult // buffered: a flush never blocks on a caller that gave up
	// wait is the caller's commit wait span, nil when the caller's span
	// does not record; the batch carrying the row links to it.
	wait trace.Span
}

type saveResult struct {
	inserted bool
	err      error
	rows     int // of the batch transaction that decided
}

// NewCommitter starts a committer writing through db. Close it before
// closing db.
func NewCommitter(db *DB, cfg CommitterConfig) *Committer {
	if cfg.Flushers <= 0 {
		cfg.Flushers = max(1, int(db.pool.Config().MaxConns)-spareConns)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = cfg.Flushers * cfg.MaxBatch * 2
	}
	cfg.MaxPending = max(cfg.MaxPending, cfg.MaxBatch)
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.ReadyRows <= 0 || cfg.ReadyRows > cfg.MaxBatch {
		cfg.ReadyRows = cfg.MaxBatch
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	flushCtx, cancel := context.WithCancel(context.Background())
	c := &Committer{
		db: db, cfg: cfg, obs: obs,
		reqs:     make(chan *saveRequest),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		flushCtx: flushCtx, cancelFlush: cancel,
	}
	go c.run()
	return c
}

// Flushers is how many batches may be written at once.
func (c *Committer) Flushers() int { return c.cfg.Flushers }

// Pending is the number of rows held: waiting for a flusher or being
// written.
func (c *Committer) Pending() int { return int(c.held.Load()) }

// SavePrice hands the quote fetched by task taskID to the committer and
// waits until the transaction holding its row has committed. It reports
// false when the task's row already existed (a redelivered task). An error
// wrapping tasks.ErrRejected means the database refused this row's data;
// any other error is transient.
//
// When ctx ends first, SavePrice returns its error at once. The row may
// still be committed, in which case the task's retry finds it and reports
// a duplicate; a row whose caller is gone before its batch forms is
// dropped.
//
// Under a recording span the wait is a span of its own, SpanCommitWait,
// which the batch transaction's span links to.
func (c *Committer) SavePrice(ctx context.Context, taskID string, q tasks.Quote) (inserted bool, err error) {
	start := time.Now()
	var wait trace.Span
	if trace.SpanFromContext(ctx).IsRecording() { // never a root of its own, nothing when off
		ctx, wait = c.db.tracer.Start(ctx, SpanCommitWait)
		defer func() {
			if err != nil {
				failSpan(wait, err)
			}
			wait.End()
		}()
	}
	r := &saveRequest{ctx: ctx, queued: start, taskID: taskID, quote: q, res: make(chan saveResult, 1), wait: wait}
	select {
	case <-c.closing:
		return false, ErrCommitterClosed
	default:
	}
	select {
	case c.reqs <- r:
	case <-c.closing:
		return false, ErrCommitterClosed
	case <-ctx.Done():
		return false, fmt.Errorf("wait for the committer: %w", context.Cause(ctx))
	}
	select {
	case res := <-r.res:
		c.obs.ObserveCommitWait(time.Since(start))
		if wait != nil {
			wait.SetAttributes(AttrBatchRows.Int(res.rows))
		}
		return res.inserted, res.err
	case <-ctx.Done():
		return false, fmt.Errorf("wait for commit: %w", context.Cause(ctx))
	}
}

// Close stops taking rows, writes every row held and waits for the writes
// to finish. If ctx ends first, the writes in progress are cancelled (their
// callers get an error, so asynq retries them) and Close returns ctx's
// error once they have stopped.
func (c *Committer) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { close(c.closing) })
	select {
	case <-c.done:
		c.cancelFlush()
		return nil
	case <-ctx.Done():
		c.cancelFlush()
		<-c.done
		return fmt.Errorf("committer: close: %w", ctx.Err())
	}
}

// run owns the queue: it takes rows from SavePrice, starts a flush
// whenever a flusher is free and rows are ready to go (see linger), and
// returns once Close was called and every held row is written.
func (c *Committer) run() {
	defer close(c.done)
	var (
		queue    []*saveRequest
		flushing int              // flushes in progress
		finished = make(chan int) // rows of a flush that ended
		closing  = c.closing
		closed   = false
		arrival  gapMeter
		timer    = time.NewTimer(time.Hour)
		timerC   <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	take := func(r *saveRequest) {
		queue = append(queue, r)
		c.held.Add(1)
		arrival.mark(r.queued)
	}
	for {
		for len(queue) > 0 && flushing < c.cfg.Flushers {
			if wait := c.linger(queue, arrival.last, closed); wait > 0 {
				if timerC == nil {
					timer.Reset(wait)
					timerC = timer.C
				}
				break
			}
			n := min(len(queue), c.cfg.MaxBatch)
			batch := queue[:n:n]
			queue = queue[n:]
			flushing++
			go func() {
				c.flush(batch)
				finished <- len(batch)
			}()
		}
		if closed && len(queue) == 0 && flushing == 0 {
			return
		}
		select {
		case <-closing: // before taking more rows
			closing, closed = nil, true
			continue
		default:
		}
		reqs := c.reqs
		if closed || int(c.held.Load()) >= c.cfg.MaxPending {
			reqs = nil // back-pressure, or closing: take no more rows
		}
		select {
		case r := <-reqs:
			take(r)
			// Take every row already offered, so that a flush about to
			// start carries them all.
			for more := true; more && int(c.held.Load()) < c.cfg.MaxPending; {
				select {
				case r := <-c.reqs:
					take(r)
				default:
					more = false
				}
			}
		case n := <-finished:
			flushing--
			c.held.Add(-int64(n))
		case <-timerC:
			timerC = nil
		case <-closing:
			closing, closed = nil, true
		}
	}
}

// linger is how much longer the waiting rows should wait for companions
// before a free flusher takes them; zero or less means now. Rows go at
// once when they arrive sparsely (the last two came MaxDelay or more
// apart), so a lone job is never delayed; under load a batch waits until
// its oldest row has waited MaxDelay, or it holds ReadyRows. That keeps
// batches large, and transactions few, when the rows are many.
func (c *Committer) linger(queue []*saveRequest, lastGap time.Duration, closed bool) time.Duration {
	if closed || len(queue) >= c.cfg.ReadyRows || lastGap >= c.cfg.MaxDelay {
		return 0
	}
	return c.cfg.MaxDelay - time.Since(queue[0].queued)
}

// gapMeter keeps the time between the last two arrivals.
type gapMeter struct {
	prev time.Time
	last time.Duration
}

func (g *gapMeter) mark(at time.Time) {
	if g.prev.IsZero() {
		g.last = time.Duration(math.MaxInt64)
	} else {
		g.last = at.Sub(g.prev)
	}
	g.prev = at
}

// flush writes one batch and answers each of its callers. Rows whose
// caller has gone are dropped; a task id that occurs twice is written
// once, and its second caller is told it was a duplicate.
func (c *Committer) flush(batch []*saveRequest) {
	var (
		rows  = make([]*saveRequest, 0, len(batch))
		first = make(map[string]*saveRequest, len(batch))
		dups  []*saveRequest
	)
	for _, r := range batch {
		switch {
		case r.ctx.Err() != nil:
			r.res <- saveResult{err: fmt.Errorf("wait for commit: %w", context.Cause(r.ctx))}
		case first[r.taskID] != nil:
			dups = append(dups, r)
		default:
			first[r.taskID] = r
			rows = append(rows, r)
		}
	}
	// The same order in every transaction, so that concurrent batches
	// take row locks in the same order and cannot deadlock.
	slices.SortFunc(rows, func(a, b *saveRequest) int { return cmp.Compare(a.taskID, b.taskID) })
	results := make(map[*saveRequest]saveResult, len(rows))
	c.write(rows, results)
	for r, res := range results {
		r.res <- res
	}
	for _, d := range dups {
		res := results[first[d.taskID]]
		d.res <- saveResult{err: res.err, rows: res.rows} // committed by its twin: a duplicate
	}
}

// write commits rows in one transaction and records each row's result.
// When the database refuses the batch for its data, the halves are
// written separately, down to the single rows at fault, so that one bad
// row fails only its own job. Any other failure (a lost connection, a
// server error, the flush timeout) fails the whole batch as transient.
func (c *Committer) write(rows []*saveRequest, results map[*saveRequest]saveResult) {
	if len(rows) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.flushCtx, c.cfg.FlushTimeout)
	defer cancel()
	ctx, span := c.startBatchSpan(ctx, rows)
	start := time.Now()
	inserted, err := c.db.insertBatch(ctx, rows)
	c.obs.ObserveFlush(len(rows), time.Since(start), err)
	if span != nil {
		if err != nil {
			failSpan(span, err)
		}
		span.End()
	}
	n := len(rows)
	switch {
	case err == nil:
		for _, r := range rows {
			results[r] = saveResult{inserted: inserted[r.taskID], rows: n}
		}
	case errors.Is(err, tasks.ErrRejected) && len(rows) > 1:
		mid := len(rows) / 2
		c.write(rows[:mid], results)
		c.write(rows[mid:], results)
	case errors.Is(err, tasks.ErrRejected):
		c.obs.ObserveRejectedRow()
		results[rows[0]] = saveResult{err: err, rows: n}
	default:
		err = fmt.Errorf("commit a batch of %d rows: %w", len(rows), err)
		for _, r := range rows {
			results[r] = saveResult{err: err, rows: n}
		}
	}
}

// startBatchSpan starts the span of one batch transaction, SpanCommitBatch:
// the root of a trace of its own (it serves many jobs' traces), linked to
// the commit wait of each traced row, and the parent of the SQL spans. It
// returns a nil span, and builds nothing, when no row is traced.
func (c *Committer) startBatchSpan(ctx context.Context, rows []*saveRequest) (context.Context, trace.Span) {
	traced := 0
	for _, r := range rows {
		if r.wait != nil {
			traced++
		}
	}
	if traced == 0 {
		return ctx, nil
	}
	links := make([]trace.Link, 0, traced)
	for _, r := range rows {
		if r.wait != nil {
			links = append(links, trace.Link{SpanContext: r.wait.SpanContext()})
		}
	}
	return c.db.tracer.Start(ctx, SpanCommitBatch,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(links...),
		trace.WithAttributes(
			AttrBatchRows.Int(len(rows)),
			attribute.String("db.system.name", "postgresql"),
			AttrDBRole.String(c.db.role.String()),
		))
}

type nopObserver struct{}

func (nopObserver) ObserveFlush(int, time.Duration, error) {}
func (nopObserver) ObserveCommitWait(time.Duration)        {}
func (nopObserver) ObserveRejectedRow()                    {}
