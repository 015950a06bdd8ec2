// Package postgres owns tickerq's PostgreSQL side: the connection pool, the
// one function that runs a job's SQL under the restricted role, the price
// writes and the schema migrations.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/tickerq/tickerq/tasks"
)

// Sentinel errors of this package.
var (
	// ErrUnsafeRole is returned when DB_ROLE exists but is too powerful to
	// run jobs under (superuser, BYPASSRLS, CREATEROLE, CREATEDB).
	ErrUnsafeRole = errors.New("unsafe DB_ROLE")
	// ErrInvalidURL is returned for a DATABASE_URL that does not parse.
	ErrInvalidURL = errors.New("invalid DATABASE_URL")
)

const (
	connectTimeout = 5 * time.Second
	pingTimeout    = 5 * time.Second
	// DefaultMaxConns is the pool's size when DATABASE_URL sets no
	// pool_max_conns: the committer's flushers and one spare. Writes are
	// group-committed, so it does not grow with the worker's concurrency.
	DefaultMaxConns = DefaultFlushers + spareConns
	// DefaultFlushers is how many batch transactions a worker runs at once
	// by default.
	DefaultFlushers = 4
	// spareConns are pool connections the committer leaves free, so that
	// /readyz's ping never queues behind busy flushers.
	spareConns = 1
)

// Config configures Open.
type Config struct {
	// URL is DATABASE_URL: the login user; pool settings may ride in it,
	// and its pool_max_conns wins over MaxConns.
	URL string
	// Role is the role every job's SQL runs under.
	Role Role
	// MaxConns is the pool's size when URL has no pool_max_conns; zero
	// means DefaultMaxConns.
	MaxConns int32
	// Logger receives the pool's warnings.
	Logger zerolog.Logger
	// TracerProvider makes the committer's spans and the SQL spans (the
	// latter only under a recording span); nil means the global provider,
	// which is a no-op unless tracing.Setup switched tracing on.
	TracerProvider trace.TracerProvider
}

// DB is the worker's handle on PostgreSQL. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	role   Role
	log    zerolog.Logger
	tracer trace.Tracer // tickerq's spans on the write path
	// roleLeaks counts connections the guard destroyed.
	roleLeaks atomic.Int64
}

// Open builds the pool, pings the database and checks that the role can be
// used safely: it exists, the login user is a member, and it is not a
// superuser or otherwise privileged role.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Role == (Role{}) {
		return nil, fmt.Errorf("%w: empty", ErrInvalidRole)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx masks the password in its message.
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	// pgxpool drops pool_* settings once parsed, so look at the text itself
	// (it is a URL query parameter or a DSN keyword).
	if !strings.Contains(cfg.URL, "pool_max_conns") {
		pcfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	db := &DB{role: cfg.Role, log: cfg.Logger, tracer: newTracer(cfg.TracerProvider)}
	pcfg.PrepareConn = db.prepareConn
	pcfg.ConnConfig.Tracer = newSQLTracer(tracerProvider(cfg.TracerProvider))
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	db.pool = pool
	if err := db.checkRole(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// checkRole pings the database (the pool connects lazily) and checks the role.
func (db *DB) checkRole(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	var exists, member, unsafe bool
	err := db.pool.QueryRow(ctx, `
		SELECT count(*) > 0,
		       coalesce(bool_or(pg_has_role(session_user, oid, 'MEMBER')), false),
		       coalesce(bool_or(rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb), false)
		  FROM pg_roles WHERE rolname = $1`, db.role.String()).Scan(&exists, &member, &unsafe)
	switch {
	case err != nil:
		return fmt.Errorf("ping database: %w", err)
	case !exists:
		return fmt.Errorf("role %q does not exist: run `worker migrate`", db.role)
	case unsafe:
		return fmt.Errorf("%w %q: it is a superuser or has BYPASSRLS, CREATEROLE or CREATEDB", ErrUnsafeRole, db.role)
	case !member:
		return fmt.Errorf("the login user is not a member of role %q: run `worker migrate` as this user or grant it", db.role)
	}
	return nil
}

// prepareConn is the pool's guard: a connection whose current_user differs
// from its session_user carries a role past its transaction, so it is
// destroyed and the pool retries with another connection.
func (db *DB) prepareConn(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var clean bool
	if err := conn.QueryRow(ctx, "SELECT current_user = session_user").Scan(&clean); err != nil {
		return false, fmt.Errorf("check connection role: %w", err)
	}
	if !clean {
		db.roleLeaks.Add(1)
		db.log.Error().Uint32("pid", conn.PgConn().PID()).Msg("pooled connection carried a role past its transaction; destroyed")
	}
	return clean, nil
}

// RoleLeaks is how many pooled connections the guard has destroyed because
// they carried a role past their transaction. It should stay 0.
func (db *DB) RoleLeaks() int64 { return db.roleLeaks.Load() }

// Close closes the pool, waiting for acquired connections to be released.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// Stat returns the pool's statistics.
func (db *DB) Stat() *pgxpool.Stat { return db.pool.Stat() }

// MaxConns is the pool's size: the most connections this process opens.
func (db *DB) MaxConns() int32 { return db.pool.Config().MaxConns }

// Role returns the role jobs run under.
func (db *DB) Role() Role { return db.role }

// InRole runs the statements queue puts on a batch in one transaction
// under SET LOCAL ROLE. BEGIN, SET LOCAL ROLE, the statements and COMMIT
// go to the server together, in one round trip: if any of them fails, the
// server skips the rest and the transaction is rolled back, so nothing
// runs as the login user and nothing half-done commits. It is the only
// place that sets the role; the role ends with the transaction, so no
// pooled connection carries it further. Errors caused by the data are
// marked tasks.ErrRejected.
func (db *DB) InRole(ctx context.Context, queue func(b *pgx.Batch)) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release()

	var b pgx.Batch
	b.Queue("BEGIN")
	roleSet := false
	b.Queue("SET LOCAL ROLE " + db.role.ident()).Exec(func(pgconn.CommandTag) error {
		roleSet = true
		return nil
	})
	queue(&b)
	b.Queue("COMMIT")
	err = conn.SendBatch(ctx, &b).Close()
	if pc := conn.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
		// A statement failed inside the transaction: end it here, or the
		// pool would destroy the connection.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
		_, rbErr := conn.Exec(rctx, "ROLLBACK")
		cancel()
		if rbErr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case !roleSet && errors.As(err, &pgErr):
		// Never tasks.ErrRejected: a missing role (SQLSTATE 22023) is an
		// operational problem that a retry may outlive, not bad data.
		return fmt.Errorf("set role %s: %w", db.role, err)
	case !roleSet:
		return fmt.Errorf("transaction under role %s: %w", db.role, err)
	}
	return classify(err)
}

// classify marks errors caused by the job's data as tasks.ErrRejected.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		return fmt.Errorf("%w: %w", tasks.ErrRejected, err)
	}
	return err
}
