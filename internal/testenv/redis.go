// Package testenv gives tests their own slice of the real services tickerq
// talks to. It is a test helper library: import it only from _test.go files.
//
// Redis: each test claims a whole database index (1 to 15) on one server
// for itself. The server is TEST_REDIS_URL's when that is set (`make test`
// sets it to a redis-server it starts for the run); otherwise the test
// process starts a redis-server of its own on a free loopback port, shared
// by its tests and killed with the process. Nothing else is ever used: not
// REDIS_URL, not 127.0.0.1:6379.
//
// TEST_REDIS_URL may name a server that holds other people's data, so a
// test only ever takes an EMPTY database, never database 0, and on cleanup
// deletes only the keys in the namespaces tickerq and asynq write (see
// ownedPrefixes); it never flushes. The claim is a key in the claimed
// database itself (ClaimKey), with a token, the test's name and an expiry
// (the lease). A test process that dies without its cleanups (a timeout)
// leaves its claim for the lease and its keys for good: that database, no
// longer empty, is then passed over until someone empties it. A test that
// outlives the lease takes its claim back when it ends, to delete its keys.
//
// Tests wait for each other when no database is free, so a test holds one
// database at a time, and never one while its parallel subtests wait for
// a slot (the tests holding the slots may be waiting for that database):
// such subtests claim their own.
//
// PostgreSQL: see Database.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const (
	firstDB = 1  // lowest database index claimed: 0 is never touched
	lastDB  = 15 // highest database index claimed

	// leaseTTL is how long the claim of a test process that died without
	// its cleanups keeps others off its database. A test that runs longer
	// (make chaos: 90 min, make soak: 120 min) takes its claim back at
	// release.
	leaseTTL   = time.Hour
	claimWait  = 10 * time.Minute // how long to wait for another test to free an index
	waitNotice = 10 * time.Second // waiting this long is logged
	retryEvery = 200 * time.Millisecond
	opTimeout  = 30 * time.Second
)

// ClaimKey is the key RedisURL keeps in the database it hands a test, for
// as long as the test runs: the claim, holding the claimer's token and test
// name. A test that lists every key of its database passes over it.
const ClaimKey = "tickerq:testenv:claim"

// ownedPrefixes are the key namespaces the tests write through tickerq and
// asynq, and so the keys a test's cleanup deletes from its database:
//   - "asynq:": every key of asynq (its internal/base/base.go);
//   - "tickerq:": tickerq's own, the rate limiter's tickerq:ratelimit:…
//     (internal/ratelimit), the schedule's tickerq:schedule:… markers
//     (internal/schedule) and ClaimKey;
//   - "rate:tickerq:": the rate limiter's GCRA state, which redis_rate keeps
//     under its "rate:" prefix.
//
// A test that writes keys of its own must use one of these namespaces.
var ownedPrefixes = []string{"asynq:", "tickerq:", "rate:tickerq:"}

// claimScript takes the database it runs on if the database is empty: 1
// when claimed, 0 when another test holds it, -1 when it holds other data.
var claimScript = redis.NewScript(`
if redis.call("DBSIZE") == 0 then
	redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
	return 1
end
if redis.call("EXISTS", KEYS[1]) == 1 then
	return 0
end
return -1`)

// releaseScript deletes a claim only if it still holds our token, so a test
// whose lease expired never frees an index another test has since claimed.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// RedisURL claims an empty Redis database index for tb alone and returns
// its URL, e.g. redis://127.0.0.1:40123/7. The server is TEST_REDIS_URL's
// (its path is ignored), else the test process's own redis-server. When no
// index is free RedisURL waits up to claimWait for a test to free one; it
// fails at once when every index 1-15 holds data that is not a test's. On
// cleanup the keys the test wrote are deleted (see ownedPrefixes), then the
// claim.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	base, own, err := redisServer(tb)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return claimOn(tb, base, own)
}

// RedisClientOpt parses a URL from RedisURL into asynq's connection options.
func RedisClientOpt(tb testing.TB, redisURL string) asynq.RedisConnOpt {
	tb.Helper()
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		tb.Fatalf("testenv: parse redis url: %v", err)
	}
	return opt
}

// redisServer picks the Redis server tests use: TEST_REDIS_URL's, else the
// process's own (own is then true).
func redisServer(tb testing.TB) (u *url.URL, own bool, err error) {
	tb.Helper()
	raw := os.Getenv("TEST_REDIS_URL")
	if raw == "" {
		raw, own = privateRedisURL(tb), true
	}
	if u, err = url.Parse(raw); err != nil {
		return nil, false, fmt.Errorf("parse TEST_REDIS_URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, false, fmt.Errorf("TEST_REDIS_URL %s: want scheme redis:// or rediss://", u.Redacted())
	}
	return u, own, nil
}

// claim is a database index a test holds.
type claim struct {
	server string // the server's URL, password hidden, for messages
	own    bool   // the server is the test process's own
	opt    *redis.Options
	value  string        // ClaimKey's value: a token of its own, a space, the test's name
	notice time.Duration // waiting this long is logged, naming the tests that hold the databases
}

// claimOn claims a database on the server base names for tb, releasing it
// when tb ends, and returns its URL. own says that no one but this
// process's tests uses the server.
func claimOn(tb testing.TB, base *url.URL, own bool) string {
	tb.Helper()
	c, err := newClaim(base, own, tb.Name())
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimWait+opTimeout)
	defer cancel()
	if err := c.acquire(ctx, tb); err != nil {
		tb.Fatalf("testenv: claim a redis database on %s: %v", c.server, err)
	}
	tb.Cleanup(func() { c.release(tb) })

	u := *base
	u.Path = "/" + strconv.Itoa(c.opt.DB)
	u.RawPath = ""
	return u.String()
}

// newClaim prepares a claim on the server base names for the test named
// name, with a token of its own.
func newClaim(base *url.URL, own bool, name string) (*claim, error) {
	opt, err := redis.ParseURL(base.String())
	if err != nil {
		return nil, fmt.Errorf("parse redis url %s: %w", base.Redacted(), err)
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	return &claim{server: base.Redacted(), own: own, opt: opt, value: token + " " + name, notice: waitNotice}, nil
}

// acquire claims the first empty index, polling while other tests hold the
// others, and sets c.opt.DB to it. Once it has waited c.notice it logs the
// names of the tests that hold them, and names them when it gives up: a
// test that holds a database while its parallel subtests wait for one may
// be waiting for itself.
func (c *claim) acquire(ctx context.Context, tb testing.TB) error {
	tb.Helper()
	rdb := redis.NewClient(c.opt)
	defer rdb.Close()
	// One connection, whose database SELECT moves from index to index.
	conn := rdb.Conn()
	defer conn.Close()

	start := time.Now()
	noticed := false
	for {
		var held, foreign, last int
		var holders []string // "database: test", once it has waited c.notice
		naming := time.Since(start) >= c.notice
	scan:
		for db := firstDB; db <= lastDB; db++ {
			if err := conn.Select(ctx, db).Err(); err != nil {
				if strings.Contains(err.Error(), "out of range") {
					break scan // a server configured with fewer databases
				}
				return fmt.Errorf("select database %d: %w", db, err)
			}
			last = db
			got, err := claimScript.Run(ctx, conn, []string{ClaimKey}, c.value, leaseTTL.Milliseconds()).Int()
			if err != nil {
				return fmt.Errorf("claim database %d: %w", db, err)
			}
			switch got {
			case 1:
				c.opt.DB = db
				return nil
			case 0:
				held++
				if naming {
					holders = append(holders, fmt.Sprintf("%d: %s", db, claimHolder(conn.Get(ctx, ClaimKey).Val())))
				}
			default:
				foreign++
			}
		}
		switch {
		case last < firstDB:
			return fmt.Errorf("the server has no database %d", firstDB)
		case held == 0:
			return fmt.Errorf("databases %d-%d all hold data that is not a test's; a test only takes an empty one and never database 0: empty one, or unset TEST_REDIS_URL for a redis-server of the tests' own", firstDB, last)
		case time.Since(start) > claimWait:
			return fmt.Errorf("no database free after %s: %d held by other tests (%s), %d holding other data", claimWait, held, strings.Join(holders, ", "), foreign)
		case !noticed && naming:
			noticed = true
			tb.Logf("testenv: waiting for a free redis database on %s: %d held by other tests (%s), %d holding other data; a test holding one while its parallel subtests wait for one may be waiting for itself",
				c.server, held, strings.Join(holders, ", "), foreign)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a free database: %w", ctx.Err())
		case <-time.After(retryEvery):
		}
	}
}

// release deletes the test's keys and then the claim, if the claim is still
// ours, or has expired and is free to take back. Keys outside ownedPrefixes
// are left where they are, and said: on the process's own server they can
// only be the test's, written outside the namespaces, which fails the test,
// because on a shared server they would keep the index from ever being
// claimed again.
func (c *claim) release(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rdb := redis.NewClient(c.opt)
	defer rdb.Close()
	db := c.opt.DB

	held, err := rdb.Get(ctx, ClaimKey).Result()
	if errors.Is(err, redis.Nil) {
		// The lease ran out under a test that ran longer (make chaos, make
		// soak). A claim takes only an empty database, so no one else can
		// have claimed this one while the test's keys were in it: take the
		// claim back, unless the database was empty and someone just did.
		var retaken bool
		if retaken, err = rdb.SetNX(ctx, ClaimKey, c.value, leaseTTL).Result(); err == nil && retaken {
			held = c.value
			tb.Logf("testenv: the claim on redis database %d of %s outlived its lease (%s): took it back to delete the test's keys", db, c.server, leaseTTL)
		}
	}
	switch {
	case err != nil:
		tb.Errorf("testenv: read or take back the claim on redis database %d of %s: %v", db, c.server, err)
		return
	case held != c.value:
		tb.Logf("testenv: the claim on redis database %d of %s expired and another test holds it now: its keys are left as they are", db, c.server)
		return
	}
	left, err := sweep(ctx, rdb)
	if err != nil {
		tb.Errorf("testenv: delete the test's keys in redis database %d of %s: %v", db, c.server, err)
		return
	}
	if len(left) > 0 {
		report := tb.Logf
		if c.own {
			report = tb.Errorf
		}
		report("testenv: %d keys in redis database %d of %s are outside the namespaces %q that tests write, so they were left there (e.g. %q)",
			len(left), db, c.server, ownedPrefixes, left[:min(len(left), 5)])
	}
	if err := releaseScript.Run(ctx, rdb, []string{ClaimKey}, c.value).Err(); err != nil {
		tb.Errorf("testenv: delete the claim on redis database %d of %s: %v", db, c.server, err)
	}
}

// sweep deletes the keys of ownedPrefixes in the database rdb uses, the
// claim aside, and returns the other keys it found.
func sweep(ctx context.Context, rdb *redis.Client) (left []string, err error) {
	if db := rdb.Options().DB; db < firstDB || db > lastDB {
		return nil, fmt.Errorf("refusing to delete keys in database %d: outside %d-%d", db, firstDB, lastDB)
	}
	var batch []string
	unlink := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := rdb.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		switch key := iter.Val(); {
		case key == ClaimKey:
		case owned(key):
			if batch = append(batch, key); len(batch) == 500 {
				if err := unlink(); err != nil {
					return nil, fmt.Errorf("unlink: %w", err)
				}
			}
		default:
			left = append(left, key)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if err := unlink(); err != nil {
		return nil, fmt.Errorf("unlink: %w", err)
	}
	return left, nil
}

// owned reports whether key is in one of ownedPrefixes.
func owned(key string) bool {
	for _, p := range ownedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// claimHolder is the name of the test whose claim holds value ("?" when the
// claim is gone or names none).
func claimHolder(value string) string {
	if _, name, ok := strings.Cut(value, " "); ok && name != "" {
		return name
	}
	return "?"
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
