package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// serverURL is the URL of s without a database, as TEST_REDIS_URL would
// name it.
func serverURL(t *testing.T, s *RedisServer) *url.URL {
	t.Helper()
	u, err := url.Parse("redis://" + s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// dbClient opens database db of s, closed when t ends.
func dbClient(t *testing.T, s *RedisServer, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DB: db})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// foreignKey is what fillForeign writes: someone else's data.
const foreignKey = "app:session"

// fillForeign puts someone else's key, with a TTL, into each of dbs of s.
func fillForeign(t *testing.T, s *RedisServer, dbs ...int) {
	t.Helper()
	for _, db := range dbs {
		if err := dbClient(t, s, db).Set(t.Context(), foreignKey, "v"+strconv.Itoa(db), time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// wantForeign checks that fillForeign's key is still in each of dbs, with
// its value and a TTL.
func wantForeign(t *testing.T, s *RedisServer, dbs ...int) {
	t.Helper()
	for _, db := range dbs {
		c := dbClient(t, s, db)
		if v, err := c.Get(t.Context(), foreignKey).Result(); err != nil || v != "v"+strconv.Itoa(db) {
			t.Errorf("database %d: GET %s = %q, %v; want the value it had", db, foreignKey, v, err)
		}
		if ttl := c.TTL(t.Context(), foreignKey).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("database %d: TTL %s = %s, want the hour it had, less the time passed", db, foreignKey, ttl)
		}
	}
}

// recorder is a testing.TB that keeps what Logf and Errorf say, and the
// cleanups, which end runs, instead of passing them on to the test.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	logs     []string
	errs     []string
	cleanups []func()
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// end runs the cleanups, last first, as a test's end does.
func (r *recorder) end() {
	for _, f := range slices.Backward(r.cleanups) {
		f()
	}
	r.cleanups = nil
}

func TestClaimTakesOnlyAnEmptyDatabase(t *testing.T) {
	t.Parallel()
	s := StartRedisServer(t)
	fillForeign(t, s, 0, 1, 2, 4)
	r := &recorder{TB: t}
	if got := dbOf(t, claimOn(r, serverURL(t, s), false)); got != 3 {
		t.Errorf("claimed database %d, want 3: the first empty one", got)
	}
	if got := dbOf(t, claimOn(r, serverURL(t, s), false)); got != 5 {
		t.Errorf("second claim took database %d, want 5: 3 is claimed, 4 holds data", got)
	}
	r.end()
	wantForeign(t, s, 0, 1, 2, 4)
	for _, db := range []int{3, 5} {
		if n := dbClient(t, s, db).DBSize(t.Context()).Val(); n != 0 {
			t.Errorf("database %d holds %d keys after the claim's end, want 0", db, n)
		}
	}
}

// Fifteen claims at once get the fifteen indexes 1-15; a sixteenth waits
// for one of them rather than take database 0 or share one.
func TestClaimsNeverShareADatabase(t *testing.T) {
	t.Parallel()
	s := StartRedisServer(t)
	base := serverURL(t, s)
	claims := make([]*claim, lastDB-firstDB+1)
	errs := make([]error, len(claims))
	var wg sync.WaitGroup
	for i := range claims {
		wg.Go(func() {
			c, err := newClaim(base, false, t.Name())
			if err == nil {
				err = c.acquire(t.Context(), t)
			}
			claims[i], errs[i] = c, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, c := range claims {
		got = append(got, c.opt.DB)
	}
	slices.Sort(got)
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; !slices.Equal(got, want) {
		t.Fatalf("%d claims at once got databases %v, want each of %v once", len(claims), got, want)
	}

	c, err := newClaim(base, false, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := c.acquire(ctx, t); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a claim while every index is held: %v, want it to wait until its deadline", err)
	}
	if n := dbClient(t, s, 0).DBSize(t.Context()).Val(); n != 0 {
		t.Errorf("database 0 holds %d keys, want 0", n)
	}
}

// A claim that waits says which tests hold the databases, so that a parent
// test holding one while its parallel subtests wait is plain to see.
func TestWaitingClaimNamesTheHolders(t *testing.T) {
	t.Parallel()
	s := StartRedisServer(t)
	fillForeign(t, s, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
	base := serverURL(t, s)
	holder, err := newClaim(base, false, "TestParent")
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.acquire(t.Context(), t); err != nil {
		t.Fatal(err)
	}
	waiter, err := newClaim(base, false, "TestParent/subtest")
	if err != nil {
		t.Fatal(err)
	}
	waiter.notice = 0 // say it at once
	r := &recorder{TB: t}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := waiter.acquire(ctx, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a claim while every index is held: %v, want it to wait until its deadline", err)
	}
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "(15: TestParent)") {
		t.Errorf("logged %q, want one line naming database 15's holder TestParent", r.logs)
	}
}

func TestClaimNeverTakesDatabaseZero(t *testing.T) {
	t.Parallel()
	s := StartRedisServer(t)
	fillForeign(t, s, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
	c, err := newClaim(serverURL(t, s), false, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.acquire(t.Context(), t)
	if err == nil || !strings.Contains(err.Error(), "databases 1-15 all hold data") {
		t.Errorf("claim when only database 0 is empty: %v, want an error saying 1-15 all hold data", err)
	}
	if d := time.Since(start); d > claimWait/2 {
		t.Errorf("took %s to give up: data that is not a test's is never freed, so there is nothing to wait for", d)
	}
	if n := dbClient(t, s, 0).DBSize(t.Context()).Val(); n != 0 {
		t.Errorf("database 0 holds %d keys, want 0", n)
	}
	wantForeign(t, s, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

// The test's keys, one per namespace tests write.
var testKeys = []string{"asynq:{default}:pending", "asynq:servers", "tickerq:schedule:daily:last", "rate:tickerq:ratelimit:0123abcd"}

// writeTestKeys writes testKeys into db.
func writeTestKeys(t *testing.T, db *redis.Client) {
	t.Helper()
	for _, k := range testKeys {
		if err := db.Set(t.Context(), k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReleaseDeletesOnlyTheTestsKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		own        bool // the server is the process's own
		wantErrors int  // a key left on one's own server is the test's
	}{
		{"TEST_REDIS_URL's server", false, 0},
		{"the process's own server", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := StartRedisServer(t)
			r := &recorder{TB: t}
			db := dbOf(t, claimOn(r, serverURL(t, s), tc.own))
			c := dbClient(t, s, db)
			writeTestKeys(t, c)
			fillForeign(t, s, db) // someone else wrote into the test's database
			r.end()

			if n := c.Exists(t.Context(), testKeys...).Val(); n != 0 {
				t.Errorf("%d of the test's keys %q are left, want none", n, testKeys)
			}
			if n := c.Exists(t.Context(), ClaimKey).Val(); n != 0 {
				t.Error("the claim is left")
			}
			wantForeign(t, s, db)
			said := append(slices.Clone(r.logs), r.errs...)
			if len(said) != 1 || !strings.Contains(said[0], foreignKey) {
				t.Errorf("said %q, want one line naming %s", said, foreignKey)
			}
			if len(r.errs) != tc.wantErrors {
				t.Errorf("errors %q, want %d", r.errs, tc.wantErrors)
			}
		})
	}
}

// claimWithTestKeys claims a database of a new server for a recorder and
// writes testKeys into it; the recorder's end releases it.
func claimWithTestKeys(t *testing.T) (r *recorder, c *redis.Client, db int) {
	t.Helper()
	s := StartRedisServer(t)
	r = &recorder{TB: t}
	db = dbOf(t, claimOn(r, serverURL(t, s), false))
	c = dbClient(t, s, db)
	writeTestKeys(t, c)
	return r, c, db
}

// A claim that expired and was taken by another test is not ours to clean.
func TestReleaseLeavesAnExpiredClaimAlone(t *testing.T) {
	t.Parallel()
	r, c, _ := claimWithTestKeys(t)
	if err := c.Set(t.Context(), ClaimKey, "another-test", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.end()
	if n := c.Exists(t.Context(), testKeys...).Val(); n != int64(len(testKeys)) {
		t.Errorf("%d of %d keys left, want all: they are the other test's now", n, len(testKeys))
	}
	if v := c.Get(t.Context(), ClaimKey).Val(); v != "another-test" {
		t.Errorf("claim %q, want the other test's", v)
	}
}

// A test that outlives its claim's lease (make chaos, make soak) still has
// its keys deleted: the database, not empty, could not be claimed since.
func TestReleaseAfterTheLeaseExpired(t *testing.T) {
	t.Parallel()
	r, c, db := claimWithTestKeys(t)
	if err := c.PExpire(t.Context(), ClaimKey, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for c.Exists(t.Context(), ClaimKey).Val() != 0 {
		time.Sleep(time.Millisecond)
	}
	r.end()
	if n := c.DBSize(t.Context()).Val(); n != 0 {
		t.Errorf("database %d holds %d keys after release, want none: %q", db, n, c.Keys(t.Context(), "*").Val())
	}
	if len(r.errs) != 0 {
		t.Errorf("errors %q, want none", r.errs)
	}
}

func TestSweepRefusesDatabaseZero(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0", DB: 0}) // never dialled
	t.Cleanup(func() { _ = c.Close() })
	if _, err := sweep(t.Context(), c); err == nil {
		t.Error("sweep of database 0 = nil, want an error")
	}
}

// Without TEST_REDIS_URL the tests use a redis-server of the process's own:
// never REDIS_URL's, never 127.0.0.1:6379.
func TestRedisURLWithoutTestRedisURL(t *testing.T) {
	t.Setenv("TEST_REDIS_URL", "")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	a, b := RedisURL(t), RedisURL(t)
	ua, _ := url.Parse(a)
	ub, _ := url.Parse(b)
	if ua.Host != ub.Host || ua.Host == "127.0.0.1:6379" || "redis://"+ua.Host != private.url {
		t.Fatalf("RedisURL gave %s and %s, want databases of the process's own server %s", a, b, private.url)
	}
	if dbOf(t, a) == dbOf(t, b) || dbOf(t, a) == 0 || dbOf(t, b) == 0 {
		t.Errorf("RedisURL gave %s and %s, want two databases other than 0", a, b)
	}
	c := redis.NewClient(&redis.Options{Addr: ua.Host})
	defer c.Close()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Errorf("ping %s: %v", ua.Host, err)
	}
}
