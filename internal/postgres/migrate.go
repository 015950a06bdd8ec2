package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is tern's bookkeeping table, schema-qualified.
const versionTable = "public.tickerq_schema_version"

// roleLockKey serializes role set-up among migrators of one database
// (tern holds its own advisory lock only while it migrates).
const roleLockKey = 0x7469636b65727121 // "tickerq!"

// MigrateOptions configures Migrate.
type MigrateOptions struct {
	// Role is the NOLOGIN role jobs run under.
	Role Role
	// Member is the login user made a member of Role; empty means the
	// migrating user (session_user).
	Member string
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	From, To int32
	// Warnings are problems worth a person's attention that do not stop
	// the migration.
	Warnings []string
}

// Migrate applies the embedded schema with tern, then creates or repairs the
// role and its grants and makes the login user a member. It is idempotent
// and safe when several hosts run it at once.
func Migrate(ctx context.Context, databaseURL string, opts MigrateOptions) (MigrateResult, error) {
	if opts.Role == (Role{}) {
		return MigrateResult{}, fmt.Errorf("%w: empty", ErrInvalidRole)
	}
	// Parsed as the pool parses it, so pool_* settings are checked and kept
	// out of the connection's runtime parameters.
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	cfg := pcfg.ConnConfig
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var res MigrateResult
	if res.From, res.To, err = migrateSchema(ctx, conn); err != nil {
		return res, err
	}
	// Roles are shared by all databases of a cluster, where advisory locks
	// do not reach: migrators of two databases may race on the same role,
	// so the idempotent set-up is retried on concurrency errors.
	for attempt := 1; ; attempt++ {
		res.Warnings, err = setUpRole(ctx, conn, opts)
		if err == nil || attempt == 5 || !isConcurrencyError(err) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

func migrateSchema(ctx context.Context, conn *pgx.Conn) (from, to int32, err error) {
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return 0, 0, fmt.Errorf("init migrator: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return 0, 0, fmt.Errorf("open migrations: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return 0, 0, fmt.Errorf("load migrations: %w", err)
	}
	if from, err = m.GetCurrentVersion(ctx); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return from, from, fmt.Errorf("migrate: %w", err)
	}
	if to, err = m.GetCurrentVersion(ctx); err != nil {
		return from, 0, fmt.Errorf("read schema version: %w", err)
	}
	return from, to, nil
}

// setUpRole creates the role if missing, makes sure it cannot log in, gives
// it exactly the privileges the two writes need, and makes the login user a
// member.
func setUpRole(ctx context.Context, conn *pgx.Conn, opts MigrateOptions) (warnings []string, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(roleLockKey)); err != nil {
			return fmt.Errorf("lock role set-up: %w", err)
		}
		role := opts.Role
		var exists, canLogin, unsafe bool
		err := tx.QueryRow(ctx, `
			SELECT count(*) > 0, coalesce(bool_or(rolcanlogin), false),
			       coalesce(bool_or(rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb), false)
			  FROM pg_roles WHERE rolname = $1`, role.String()).Scan(&exists, &canLogin, &unsafe)
		switch {
		case err != nil:
			return fmt.Errorf("look up role: %w", err)
		case unsafe:
			return fmt.Errorf("%w %q: it is a superuser or has BYPASSRLS, CREATEROLE or CREATEDB; refusing to run jobs under it", ErrUnsafeRole, role)
		case !exists:
			if _, err := tx.Exec(ctx, "CREATE ROLE "+role.ident()+" NOLOGIN NOINHERIT"); err != nil {
				return fmt.Errorf("create role %s: %w", role, err)
			}
		case canLogin:
			if _, err := tx.Exec(ctx, "ALTER ROLE "+role.ident()+" NOLOGIN"); err != nil {
				return fmt.Errorf("make role %s NOLOGIN: %w", role, err)
			}
		}
		r := role.ident()
		for _, stmt := range []string{
			// Start from nothing, so the grants below are all it has.
			"REVOKE ALL ON stock_prices, latest_prices FROM " + r,
			"GRANT USAGE ON SCHEMA public TO " + r,
			"GRANT SELECT (task_id), INSERT (task_id, symbol, price, change, change_pct, day_high, day_low, day_open, prev_close, quoted_at) ON stock_prices TO " + r,
			// ON CONFLICT DO UPDATE reads the conflicting row and EXCLUDED.
			"GRANT SELECT, INSERT (symbol, price, quoted_at, task_id, updated_at), UPDATE (price, quoted_at, task_id, updated_at) ON latest_prices TO " + r,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("grant privileges to %s: %w", role, err)
			}
		}
		warnings, err = grantMembership(ctx, tx, role, opts.Member)
		return err
	})
	return warnings, err
}

// grantMembership makes member (default: session_user) a member of role, so
// it can SET ROLE, without inheriting the role's privileges: the login must
// not write except under SET ROLE. PostgreSQL 16 and later say so on the
// grant (INHERIT FALSE); before 16 it is the member's NOINHERIT attribute,
// which is set here when the migrating user may, and reported otherwise.
func grantMembership(ctx context.Context, tx pgx.Tx, role Role, member string) ([]string, error) {
	var (
		name           string
		super, inherit bool
		isMember       bool
		serverVersion  int
	)
	err := tx.QueryRow(ctx, `
		SELECT r.rolname, r.rolsuper, r.rolinherit,
		       pg_has_role(r.oid, $2::text, 'MEMBER'),
		       current_setting('server_version_num')::int
		  FROM pg_roles r WHERE r.rolname = coalesce(nullif($1, ''), session_user)`,
		member, role.String()).Scan(&name, &super, &inherit, &isMember, &serverVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("login user %q does not exist", member)
	}
	if err != nil {
		return nil, fmt.Errorf("look up login user: %w", err)
	}
	if super {
		// Superusers may SET ROLE to anything; membership changes nothing.
		return []string{fmt.Sprintf("login user %q is a superuser: fine for development, but a non-superuser login is safer in production", name)}, nil
	}
	if !isMember {
		stmt := "GRANT " + role.ident() + " TO " + pgx.Identifier{name}.Sanitize()
		if serverVersion >= 160000 {
			stmt += " WITH INHERIT FALSE, SET TRUE"
		}
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("grant role %s to %s: %w", role, name, err)
		}
	}
	if serverVersion >= 160000 || !inherit {
		return nil, nil
	}
	// Before 16: NOINHERIT on the login. A savepoint keeps the transaction
	// usable when the migrating user lacks CREATEROLE.
	loginIdent := pgx.Identifier{name}.Sanitize()
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if _, err := sp.Exec(ctx, "ALTER ROLE "+loginIdent+" NOINHERIT"); err != nil {
		_ = sp.Rollback(ctx)
		return []string{fmt.Sprintf("login user %q inherits the privileges of %q, so it could write without SET ROLE, and this user may not change that (%v); run ALTER ROLE %s NOINHERIT as a superuser", name, role, err, loginIdent)}, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return []string{fmt.Sprintf("set NOINHERIT on login user %q: before PostgreSQL 16 that is the only way to keep it from writing without SET ROLE %s", name, role)}, nil
}

// isConcurrencyError reports errors that concurrent role set-ups in other
// databases of the cluster can cause.
func isConcurrencyError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01", "42710", "23505", "XX000": // serialization, deadlock, duplicate role, unique, "tuple concurrently updated"
		return true
	}
	return false
}
