package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/internal/postgres"
)

// defaultDatabaseURL is the PostgreSQL server tests use when
// TEST_DATABASE_URL is unset: the loopback one, as its superuser.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Database is a database of a test's own on the test PostgreSQL server
// (TEST_DATABASE_URL, else defaultDatabaseURL; never DATABASE_URL, which may
// name a database of the user's). Tests create and drop their own databases
// and roles there and touch nothing else.
type Database struct {
	// Name of the database.
	Name string
	// URL of the database as the superuser the tests run as.
	URL string
	// Role is a writer role of the test's own (roles are shared by the whole
	// cluster, so tests never share one).
	Role postgres.Role
}

// adminURL is the server the tests use, from TEST_DATABASE_URL, else
// defaultDatabaseURL; its database part is ignored.
func adminURL() *url.URL {
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		raw = defaultDatabaseURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		panic("testenv: bad TEST_DATABASE_URL: " + err.Error())
	}
	return u
}

// URLFor returns the test server's URL for database name, optionally as
// another user.
func URLFor(name, user string) string {
	u := adminURL()
	u.Path = "/" + name
	if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

// AdminExec runs SQL on the server's postgres database as the test superuser.
func AdminExec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URLFor("postgres", ""))
	if err != nil {
		tb.Fatalf("testenv: connect to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("testenv: %s: %v", sql, err)
	}
}

// RandomName returns prefix followed by 12 random hex digits.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// NewEmptyDatabase creates a database of the test's own, dropped (with its
// role) when the test ends. Nothing is migrated.
func NewEmptyDatabase(tb testing.TB) *Database {
	tb.Helper()
	name := RandomName("tickerq_test_")
	role, err := postgres.ParseRole(RandomName("tq_writer_"))
	if err != nil {
		tb.Fatal(err)
	}
	AdminExec(tb, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	tb.Cleanup(func() {
		AdminExec(tb, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		AdminExec(tb, "DROP ROLE IF EXISTS "+pgx.Identifier{role.String()}.Sanitize())
	})
	return &Database{Name: name, URL: URLFor(name, ""), Role: role}
}

// NewDatabase is NewEmptyDatabase, migrated with its role.
func NewDatabase(tb testing.TB) *Database {
	tb.Helper()
	db := NewEmptyDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := postgres.Migrate(ctx, db.URL, postgres.MigrateOptions{Role: db.Role}); err != nil {
		tb.Fatalf("testenv: migrate %s: %v", db.Name, err)
	}
	return db
}

// Conn opens a connection to the database as the test superuser, closed
// when the test ends.
func (d *Database) Conn(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		tb.Fatalf("testenv: connect to %s: %v", d.Name, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
