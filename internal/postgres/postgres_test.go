package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

func openDB(t *testing.T, url string, role postgres.Role) *postgres.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, postgres.Config{URL: url, Role: role, MaxConns: 4, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

func sampleQuote(symbol, price string, at time.Time) tasks.Quote {
	return tasks.Quote{Symbol: symbol, Price: json.Number(price), Change: "-1.5", DayHigh: "200", QuotedAt: at}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"tickerq_writer", true},
		{"_w1", true},
		{"a", true},
		{"", false},
		{"Tickerq", false},
		{"1abc", false},
		{"tickerq_writer; DROP TABLE stock_prices", false},
		{`x"; RESET ROLE; --`, false},
		{"tickerq writer", false},
		{"tickerq-writer", false},
		{"a23456789012345678901234567890123456789012345678901234567890123", true}, // 63
		{"a234567890123456789012345678901234567890123456789012345678901234", false},
		{"postgres", false},
		{"pg_write_server_files", false},
		{"public", false},
		{"none", false},
		{"current_user", false},
		{"session_user", false},
		{"rôle", false},
	} {
		_, err := postgres.ParseRole(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("postgres.ParseRole(%q) error = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, postgres.ErrInvalidRole) {
			t.Errorf("postgres.ParseRole(%q) error %v is not postgres.ErrInvalidRole", tc.name, err)
		}
	}
}

func TestOpenRefusesZeroRoleBeforeConnecting(t *testing.T) {
	t.Parallel()
	// Port 1 refuses connections: the error must come before any dial.
	_, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://postgres@127.0.0.1:1/x"})
	if !errors.Is(err, postgres.ErrInvalidRole) {
		t.Fatalf("Open with zero Role: %v, want postgres.ErrInvalidRole", err)
	}
}

func TestSavePriceWritesOneRowUnderRole(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	ctx := context.Background()
	at := time.Unix(1763719200, 0).UTC()
	// More digits than a float64 holds: must arrive exactly.
	const exact = "173.250000000000000000000001"

	inserted, err := db.SavePrice(ctx, "task-1", sampleQuote("GOOG", exact, at))
	if err != nil || !inserted {
		t.Fatalf("SavePrice = %v, %v; want true, nil", inserted, err)
	}
	var n int
	var writtenBy, price string
	var quotedAt time.Time
	err = tdb.Conn(t).QueryRow(ctx, `SELECT count(*) OVER (), written_by, price::text, quoted_at
		FROM stock_prices WHERE task_id = 'task-1'`).Scan(&n, &writtenBy, &price, &quotedAt)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || writtenBy != tdb.Role.String() || price != exact || !quotedAt.Equal(at) {
		t.Fatalf("row: n=%d written_by=%q price=%s quoted_at=%s; want 1, %q, %s, %s", n, writtenBy, price, quotedAt, tdb.Role, exact, at)
	}
}

func TestSavePriceSameTaskTwiceLeavesOneRow(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	ctx := context.Background()
	q := sampleQuote("MSFT", "410.5", time.Now().Truncate(time.Second))

	// Concurrent duplicate deliveries as well as sequential ones.
	var wg sync.WaitGroup
	results := make(chan bool, 10)
	for range 10 {
		wg.Go(func() {
			inserted, err := db.SavePrice(ctx, "dup-task", q)
			if err != nil {
				t.Error(err)
			}
			results <- inserted
		})
	}
	wg.Wait()
	close(results)
	wins := 0
	for r := range results {
		if r {
			wins++
		}
	}
	var n int
	if err := tdb.Conn(t).QueryRow(ctx, "SELECT count(*) FROM stock_prices WHERE task_id = 'dup-task'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 || wins != 1 {
		t.Fatalf("rows = %d, inserted reported %d times; want 1 and 1", n, wins)
	}
}

func TestLatestPricesNeverGoesBack(t *testing.T) {
	t.Parallel()
	base := time.Unix(1763719200, 0).UTC()
	for _, tc := range []struct {
		name      string
		writes    []time.Duration // offsets of quoted_at, in write order
		wantPrice string
	}{
		{"newer replaces", []time.Duration{0, time.Minute}, "2"},
		{"older is ignored", []time.Duration{time.Minute, 0}, "1"},
		{"equal is ignored", []time.Duration{0, 0}, "1"},
		{"out of order", []time.Duration{time.Minute, 3 * time.Minute, 2 * time.Minute}, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tdb := testenv.NewDatabase(t)
			db := openDB(t, tdb.URL, tdb.Role)
			ctx := context.Background()
			for i, off := range tc.writes {
				if _, err := db.SavePrice(ctx, fmt.Sprint("t", i), sampleQuote("AAPL", fmt.Sprint(i+1), base.Add(off))); err != nil {
					t.Fatal(err)
				}
			}
			var price string
			if err := tdb.Conn(t).QueryRow(ctx, "SELECT price::text FROM latest_prices WHERE symbol = 'AAPL'").Scan(&price); err != nil {
				t.Fatal(err)
			}
			if price != tc.wantPrice {
				t.Fatalf("latest price = %s, want %s", price, tc.wantPrice)
			}
		})
	}
}

func TestDatabaseRejectsBadPrices(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	for i, price := range []string{"NaN", "Infinity", "-Infinity", "0", "-1"} {
		_, err := db.SavePrice(context.Background(), fmt.Sprint("bad", i), sampleQuote("IBM", price, time.Now()))
		if !errors.Is(err, tasks.ErrRejected) {
			t.Errorf("price %s: err = %v, want tasks.ErrRejected", price, err)
		}
	}
	q := sampleQuote("IBM", "10", time.Now())
	q.DayHigh = "NaN"
	if _, err := db.SavePrice(context.Background(), "badhigh", q); !errors.Is(err, tasks.ErrRejected) {
		t.Errorf("day_high NaN: err = %v, want tasks.ErrRejected", err)
	}
}

func TestPooledConnectionsNeverKeepTheRole(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if _, err := db.SavePrice(ctx, fmt.Sprint("c", i), sampleQuote("NVDA", "100", time.Now())); err != nil {
				t.Error(err)
			}
		})
	}
	// A failing job rolls back; its connection must come back clean too.
	for i := range 20 {
		wg.Go(func() {
			_, _ = db.SavePrice(ctx, fmt.Sprint("f", i), sampleQuote("NVDA", "NaN", time.Now()))
		})
	}
	wg.Wait()

	if n := db.RoleLeaks(); n != 0 {
		t.Fatalf("the guard destroyed %d connections that kept the role", n)
	}
	conns := db.Pool().AcquireAllIdle(ctx)
	if len(conns) == 0 {
		t.Fatal("no idle connections to inspect")
	}
	for _, c := range conns {
		var cur, sess string
		if err := c.QueryRow(ctx, "SELECT current_user, session_user").Scan(&cur, &sess); err != nil {
			t.Fatal(err)
		}
		if cur != sess {
			t.Errorf("pooled connection pid %d: current_user %q, session_user %q", c.Conn().PgConn().PID(), cur, sess)
		}
		c.Release()
	}
}

func TestPrepareConnDestroysLeakedRole(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	ctx := context.Background()
	db := openDB(t, tdb.URL+"&pool_max_conns=1", tdb.Role) // the URL's size wins

	// Simulate a bug elsewhere: a session-level SET ROLE that outlives its use.
	c, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leakedPID := c.Conn().PgConn().PID()
	if _, err := c.Exec(ctx, "SET ROLE "+tdb.Role.Ident()); err != nil {
		t.Fatal(err)
	}
	c.Release()

	var pid uint32
	var cur, sess string
	if err := db.Pool().QueryRow(ctx, "SELECT pg_backend_pid(), current_user, session_user").Scan(&pid, &cur, &sess); err != nil {
		t.Fatal(err)
	}
	if pid == leakedPID || cur != sess {
		t.Fatalf("got pid %d (leaked %d) with current_user %q, session_user %q; want a fresh, clean connection", pid, leakedPID, cur, sess)
	}
	if n := db.RoleLeaks(); n != 1 {
		t.Fatalf("RoleLeaks = %d, want 1", n)
	}
}

func TestLoginUserCannotWriteWithoutRole(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewEmptyDatabase(t)
	login := testenv.RandomName("tq_login_")
	ident := pgx.Identifier{login}.Sanitize()
	// A plain login, as production should use: not a superuser, with the
	// defaults (INHERIT).
	testenv.AdminExec(t, "CREATE ROLE "+ident+" LOGIN")
	t.Cleanup(func() {
		testenv.AdminExec(t, "DROP DATABASE IF EXISTS "+pgx.Identifier{tdb.Name}.Sanitize()+" WITH (FORCE)")
		testenv.AdminExec(t, "DROP ROLE IF EXISTS "+ident)
	})
	ctx := context.Background()
	res, err := postgres.Migrate(ctx, tdb.URL, postgres.MigrateOptions{Role: tdb.Role, Member: login})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrate warnings: %q", res.Warnings)
	loginURL := testenv.URLFor(tdb.Name, login)

	conn, err := pgx.Connect(ctx, loginURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"INSERT INTO stock_prices (task_id, symbol, price, quoted_at) VALUES ('x', 'X', 1, now())",
		"INSERT INTO latest_prices (symbol, price, quoted_at, task_id) VALUES ('X', 1, now(), 'x')",
	} {
		_, err = conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as login user without the role: %v, want permission denied (42501)", stmt, err)
		}
	}

	// The same login writes through the role, and the row says so.
	db := openDB(t, loginURL, tdb.Role)
	if _, err := db.SavePrice(ctx, "via-role", sampleQuote("AMZN", "180", time.Now())); err != nil {
		t.Fatal(err)
	}
	var writtenBy string
	if err := tdb.Conn(t).QueryRow(ctx, "SELECT written_by FROM stock_prices WHERE task_id = 'via-role'").Scan(&writtenBy); err != nil {
		t.Fatal(err)
	}
	if writtenBy != tdb.Role.String() {
		t.Fatalf("written_by = %q, want %q", writtenBy, tdb.Role)
	}
	// The role itself cannot forge written_by or touch other columns.
	err = db.InRole(ctx, func(b *pgx.Batch) {
		b.Queue("INSERT INTO stock_prices (task_id, symbol, price, quoted_at, written_by) VALUES ('f', 'F', 1, now(), 'someone')")
	})
	if err == nil {
		t.Fatal("role could set written_by")
	}
}

// TestInRoleFailureRollsBackAndKeepsTheConnection: a statement that fails
// in the middle of InRole's one-round-trip transaction undoes the ones
// before it, and the connection goes back to the pool clean instead of
// being destroyed.
func TestInRoleFailureRollsBackAndKeepsTheConnection(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	ctx := context.Background()
	db := openDB(t, tdb.URL+"&pool_max_conns=1", tdb.Role) // the URL's size wins
	var pidBefore uint32
	if err := db.Pool().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidBefore); err != nil {
		t.Fatal(err)
	}
	var who string
	err := db.InRole(ctx, func(b *pgx.Batch) {
		b.Queue("SELECT current_user").QueryRow(func(row pgx.Row) error { return row.Scan(&who) })
		b.Queue("INSERT INTO stock_prices (task_id, symbol, price, quoted_at) VALUES ('first', 'F', 1, now())")
		b.Queue("INSERT INTO stock_prices (task_id, symbol, price, quoted_at) VALUES ('second', 'F', -1, now())")
	})
	if !errors.Is(err, tasks.ErrRejected) {
		t.Fatalf("InRole with a CHECK violation: %v, want tasks.ErrRejected", err)
	}
	if who != tdb.Role.String() {
		t.Fatalf("statements ran as %q, want %q", who, tdb.Role)
	}
	var n int
	if err := tdb.Conn(t).QueryRow(ctx, "SELECT count(*) FROM stock_prices").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows after a failed transaction, want 0", n)
	}
	var pidAfter uint32
	var cur, sess string
	if err := db.Pool().QueryRow(ctx, "SELECT pg_backend_pid(), current_user, session_user").Scan(&pidAfter, &cur, &sess); err != nil {
		t.Fatal(err)
	}
	if pidAfter != pidBefore || cur != sess || db.RoleLeaks() != 0 {
		t.Fatalf("after the failure: pid %d (before %d), current_user %q, session_user %q, leaks %d; want the same clean connection",
			pidAfter, pidBefore, cur, sess, db.RoleLeaks())
	}
}

func TestMissingRoleIsNotRejectedData(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	// The role disappears under a running worker (a restore without the
	// cluster's globals, say): SET LOCAL ROLE fails with SQLSTATE 22023,
	// which must not pass for rejected data, or every job would be archived.
	ctx := context.Background()
	if _, err := tdb.Conn(t).Exec(ctx, "DROP OWNED BY "+tdb.Role.Ident()+"; DROP ROLE "+tdb.Role.Ident()); err != nil {
		t.Fatal(err)
	}
	_, err := db.SavePrice(ctx, "t", sampleQuote("IBM", "10", time.Now()))
	if err == nil || errors.Is(err, tasks.ErrRejected) {
		t.Fatalf("SavePrice without the role: %v; want an error that is not ErrRejected", err)
	}
}

func TestOpenRefusesUnsafeRole(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	testenv.AdminExec(t, "ALTER ROLE "+tdb.Role.Ident()+" CREATEDB")
	_, err := postgres.Open(context.Background(), postgres.Config{URL: tdb.URL, Role: tdb.Role, Logger: zerolog.Nop()})
	if !errors.Is(err, postgres.ErrUnsafeRole) {
		t.Fatalf("Open with a CREATEDB role: %v, want postgres.ErrUnsafeRole", err)
	}
}

func TestMigrateConcurrentlyAndIdempotently(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewEmptyDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			_, err := postgres.Migrate(ctx, tdb.URL, postgres.MigrateOptions{Role: tdb.Role})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent migrate: %v", err)
		}
	}
	res, err := postgres.Migrate(ctx, tdb.URL, postgres.MigrateOptions{Role: tdb.Role})
	if err != nil {
		t.Fatal(err)
	}
	if res.From != res.To || res.To < 1 {
		t.Fatalf("re-run migrated %d -> %d, want no change", res.From, res.To)
	}
	var canLogin bool
	if err := tdb.Conn(t).QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", tdb.Role.String()).Scan(&canLogin); err != nil {
		t.Fatal(err)
	}
	if canLogin {
		t.Fatal("role can log in")
	}
}
