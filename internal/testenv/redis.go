// Package testenv gives tests their own slice of the real services tickerq
// talks to. It is a test helper library: import it only from _test.go files.
//
// Tests in several packages run in parallel processes against one Redis, so
// each test claims a whole database index for itself (1 to 14). The claims
// live in database 15 as keys with a token and an expiry, so a test process
// that dies leaves nothing locked for longer than the lease. Database 0 is
// never touched: a developer's worker may be using it.
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
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const (
	// DefaultRedisURL is used when neither TEST_REDIS_URL nor REDIS_URL is set.
	DefaultRedisURL = "redis://127.0.0.1:6379"

	firstDB   = 1  // lowest database index handed out
	lastDB    = 14 // highest database index handed out
	controlDB = 15 // holds the claim keys

	claimPrefix = "tickerq:testdb:"
	leaseTTL    = 900 * time.Second // a claim outlives any sane test
	claimWait   = 60 * time.Second  // how long to wait for a free index
	retryEvery  = 200 * time.Millisecond
	opTimeout   = 10 * time.Second
)

// errNoFreeDB is returned when every index stays claimed for claimWait.
var errNoFreeDB = errors.New("no free redis database index")

// releaseScript deletes a claim only if it still holds our token, so a test
// whose lease expired never frees an index another test has since claimed.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// RedisURL claims a Redis database index for tb alone, flushes it and
// returns its URL, e.g. redis://127.0.0.1:6379/7. The server comes from
// TEST_REDIS_URL, else REDIS_URL, else DefaultRedisURL; its path is ignored.
// When every index is busy RedisURL waits up to a minute for one. On cleanup
// the database is flushed and the claim released.
func RedisURL(tb testing.TB) string {
	tb.Helper()

	base, err := baseURL()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	opt, err := redis.ParseURL(base.String())
	if err != nil {
		tb.Fatalf("testenv: parse redis url %s: %v", base.Redacted(), err)
	}
	opt.DB = controlDB
	ctl := redis.NewClient(opt)

	ctx, cancel := context.WithTimeout(context.Background(), claimWait+opTimeout)
	defer cancel()
	db, token, err := acquire(ctx, ctl)
	if err != nil {
		_ = ctl.Close()
		tb.Fatalf("testenv: claim a redis database on %s: %v", base.Redacted(), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := release(ctx, ctl, db, token); err != nil {
			tb.Errorf("testenv: release redis database %d: %v", db, err)
		}
		_ = ctl.Close()
	})
	if err := flush(ctx, ctl, db); err != nil {
		tb.Fatalf("testenv: flush redis database %d: %v", db, err)
	}

	u := *base
	u.Path = "/" + strconv.Itoa(db)
	u.RawPath = ""
	return u.String()
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

// baseURL picks the Redis server tests use.
func baseURL() (*url.URL, error) {
	raw := DefaultRedisURL
	for _, name := range []string{"TEST_REDIS_URL", "REDIS_URL"} {
		if v := os.Getenv(name); v != "" {
			raw = v
			break
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis url %s: want scheme redis:// or rediss://", u.Redacted())
	}
	return u, nil
}

// acquire claims the first free index, polling until ctx is done or
// claimWait has passed.
func acquire(ctx context.Context, ctl *redis.Client) (db int, token string, err error) {
	token, err = newToken()
	if err != nil {
		return 0, "", err
	}
	deadline := time.Now().Add(claimWait)
	for {
		for db := firstDB; db <= lastDB; db++ {
			ok, err := ctl.SetNX(ctx, claimKey(db), token, leaseTTL).Result()
			if err != nil {
				return 0, "", fmt.Errorf("claim database %d: %w", db, err)
			}
			if ok {
				return db, token, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("%w after %s: indexes %d-%d all claimed in database %d", errNoFreeDB, claimWait, firstDB, lastDB, controlDB)
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("wait for a free database: %w", ctx.Err())
		case <-time.After(retryEvery):
		}
	}
}

// release flushes db and frees its claim, but only while token still holds
// the claim.
func release(ctx context.Context, ctl *redis.Client, db int, token string) error {
	held, err := ctl.Get(ctx, claimKey(db)).Result()
	if errors.Is(err, redis.Nil) || (err == nil && held != token) {
		return nil // the lease expired; the index is someone else's now
	}
	if err != nil {
		return fmt.Errorf("read claim: %w", err)
	}
	if err := flush(ctx, ctl, db); err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, ctl, []string{claimKey(db)}, token).Err(); err != nil {
		return fmt.Errorf("delete claim: %w", err)
	}
	return nil
}

// flush empties database db on the server ctl talks to.
func flush(ctx context.Context, ctl *redis.Client, db int) error {
	if db < firstDB || db > lastDB {
		return fmt.Errorf("refusing to flush database %d: outside %d-%d", db, firstDB, lastDB)
	}
	opt := *ctl.Options()
	opt.DB = db
	c := redis.NewClient(&opt)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flushdb %d: %w", db, err)
	}
	return nil
}

func claimKey(db int) string { return claimPrefix + strconv.Itoa(db) }

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
