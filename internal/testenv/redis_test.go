package testenv

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// dbOf returns the database index in a URL from RedisURL.
func dbOf(t *testing.T, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(u.Path, "/"))
	if err != nil {
		t.Fatalf("database index in %q: %v", raw, err)
	}
	return n
}

// client opens raw and closes it when t ends.
func client(t *testing.T, raw string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisURL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	var first string
	t.Run("claim", func(t *testing.T) {
		a, b := RedisURL(t), RedisURL(t)
		first = a
		da, db := dbOf(t, a), dbOf(t, b)
		for _, d := range []int{da, db} {
			if d < firstDB || d > lastDB {
				t.Errorf("database %d outside %d-%d", d, firstDB, lastDB)
			}
		}
		if da == db {
			t.Fatalf("two claims got the same database %d", da)
		}

		ca, cb := client(t, a), client(t, b)
		if n, err := ca.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Fatalf("fresh database: DBSIZE = %d, %v; want 0, nil", n, err)
		}
		if err := ca.Set(ctx, "testenv:probe", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := cb.Get(ctx, "testenv:probe").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("key written to %s is visible in %s: %v", a, b, err)
		}

		u, _ := url.Parse(a)
		u.Path = "/" + strconv.Itoa(controlDB)
		ctl := client(t, u.String())
		// A release with a stale token must neither flush nor free the index.
		if err := release(ctx, ctl, da, "not-our-token"); err != nil {
			t.Fatalf("release with a foreign token: %v", err)
		}
		if err := ca.Get(ctx, "testenv:probe").Err(); err != nil {
			t.Errorf("release with a foreign token flushed the database: %v", err)
		}
	})

	// The subtest's cleanup flushed its databases. Another process may have
	// claimed the index since, but it cannot have written our probe key.
	c := client(t, first)
	if err := c.Get(ctx, "testenv:probe").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("database not flushed on cleanup: GET probe = %v, want redis.Nil", err)
	}
}

func TestFlushRefusesReservedDatabases(t *testing.T) {
	t.Parallel()
	ctl := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}) // never dialled
	t.Cleanup(func() { _ = ctl.Close() })
	for _, db := range []int{0, 15} {
		if err := flush(t.Context(), ctl, db); err == nil {
			t.Errorf("flush(%d) = nil, want an error", db)
		}
	}
}
