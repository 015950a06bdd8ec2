package postgres

import (
	"context"
	"errors"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/internal/tracing"
)

// Span names and attributes of the write path.
const (
	// SpanCommitWait is a job's wait, from handing its row to the
	// committer until the transaction holding it has committed or failed.
	SpanCommitWait = "commit wait"
	// SpanCommitBatch is one batch transaction, a root span linked to the
	// commit wait of every row it carries.
	SpanCommitBatch = "commit batch"
	// AttrBatchRows is the number of rows of a batch transaction.
	AttrBatchRows = attribute.Key("tickerq.batch.rows")
	// AttrDBRole is the role the batch ran under.
	AttrDBRole = attribute.Key("tickerq.db.role")
)

// sqlTracer is otelpgx's tracer (statement text, never parameter values),
// called only under a recording span: the pool guard's check, pings and
// /readyz's checks run outside any span and must not each start a trace,
// and with tracing off a query costs no more than a check. otelpgx's
// metrics go to the global meter provider, which tickerq leaves a no-op.
type sqlTracer struct{ t *otelpgx.Tracer }

var (
	_ pgx.QueryTracer       = sqlTracer{}
	_ pgx.BatchTracer       = sqlTracer{}
	_ pgx.ConnectTracer     = sqlTracer{}
	_ pgx.PrepareTracer     = sqlTracer{}
	_ pgx.CopyFromTracer    = sqlTracer{}
	_ pgxpool.AcquireTracer = sqlTracer{}
)

func newSQLTracer(tp trace.TracerProvider) sqlTracer {
	return sqlTracer{t: otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))}
}

// recording is whether ctx's span records; a Trace*End gets the context
// its Trace*Start returned, so the two always agree.
func recording(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

func (s sqlTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TraceQueryStart(ctx, c, d)
}

func (s sqlTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if recording(ctx) {
		d.Err = dataFree(d.Err)
		s.t.TraceQueryEnd(ctx, c, d)
	}
}

func (s sqlTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TraceBatchStart(ctx, c, d)
}

func (s sqlTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	if recording(ctx) {
		d.Err = dataFree(d.Err)
		s.t.TraceBatchQuery(ctx, c, d)
	}
}

func (s sqlTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if recording(ctx) {
		d.Err = dataFree(d.Err)
		s.t.TraceBatchEnd(ctx, c, d)
	}
}

func (s sqlTracer) TraceConnectStart(ctx context.Context, d pgx.TraceConnectStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TraceConnectStart(ctx, d)
}

func (s sqlTracer) TraceConnectEnd(ctx context.Context, d pgx.TraceConnectEndData) {
	if recording(ctx) {
		s.t.TraceConnectEnd(ctx, d)
	}
}

func (s sqlTracer) TracePrepareStart(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TracePrepareStart(ctx, c, d)
}

func (s sqlTracer) TracePrepareEnd(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareEndData) {
	if recording(ctx) {
		d.Err = dataFree(d.Err)
		s.t.TracePrepareEnd(ctx, c, d)
	}
}

func (s sqlTracer) TraceCopyFromStart(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TraceCopyFromStart(ctx, c, d)
}

func (s sqlTracer) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	if recording(ctx) {
		d.Err = dataFree(d.Err)
		s.t.TraceCopyFromEnd(ctx, c, d)
	}
}

func (s sqlTracer) TraceAcquireStart(ctx context.Context, p *pgxpool.Pool, d pgxpool.TraceAcquireStartData) context.Context {
	if !recording(ctx) {
		return ctx
	}
	return s.t.TraceAcquireStart(ctx, p, d)
}

func (s sqlTracer) TraceAcquireEnd(ctx context.Context, p *pgxpool.Pool, d pgxpool.TraceAcquireEndData) {
	if recording(ctx) {
		s.t.TraceAcquireEnd(ctx, p, d)
	}
}

// tracerProvider is tp, or the global provider when tp is nil.
func tracerProvider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return otel.GetTracerProvider() // forwards to what tracing.Setup installs, even later
	}
	return tp
}

// newTracer is tickerq's tracer from tp (see tracerProvider).
func newTracer(tp trace.TracerProvider) trace.Tracer { return tracerProvider(tp).Tracer(tracing.Name) }

// failSpan marks span failed with a description that holds no data (see
// describe).
func failSpan(span trace.Span, err error) { span.SetStatus(codes.Error, describe(err)) }

// describe names err without its message: a database error's message can
// quote a value it refused (a price), so only its SQLSTATE is kept.
func describe(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return "SQLSTATE " + pgErr.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "failed"
}

// dataFreeError is what otelpgx sees of a statement's error: otelpgx puts
// Error() in the SQL span's status and exception event, so it says only
// describe(err); Unwrap still gives otelpgx the SQLSTATE attribute.
type dataFreeError struct{ err error }

func (e dataFreeError) Error() string { return describe(e.err) }
func (e dataFreeError) Unwrap() error { return e.err }

func dataFree(err error) error {
	if err == nil {
		return nil
	}
	return dataFreeError{err}
}
