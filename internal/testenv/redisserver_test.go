package testenv

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A write acknowledged under appendonly+fsync always survives a kill -9 and
// a restart on the same port; that is what the chaos suite relies on.
func TestRedisServerSurvivesKill(t *testing.T) {
	s := StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered after Kill")
	}
	s.Start()
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart: get k = %q, %v; want \"v\"", got, err)
	}
}

// A Redis that took the chosen port before our server bound it answers PING
// there while ours exits; it is never taken for ours: another port is tried.
func TestRedisServerIsTheOneItStarted(t *testing.T) {
	t.Parallel()
	decoy := StartRedisServer(t)
	decoyPID := decoy.cmd.Process.Pid
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, ports func() (int, error)) (addr string)
	}{
		{"StartRedisServer", func(t *testing.T, ports func() (int, error)) string {
			return startRedisServer(t, ports).Addr()
		}},
		{"the process's own server", func(t *testing.T, ports func() (int, error)) string {
			raw, err := startPrivateRedis(redisServerBin(t), ports)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { // it would live as long as the test process
				c := redis.NewClient(&redis.Options{Addr: u.Host})
				_ = c.ShutdownNoSave(context.Background()).Err()
				_ = c.Close()
			})
			return u.Host
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var asked int
			ports := func() (int, error) { // the decoy's port first
				if asked++; asked == 1 {
					return decoy.Port(), nil
				}
				return freePort()
			}
			addr := tc.start(t, ports)
			if addr == decoy.Addr() {
				t.Fatalf("took the Redis of pid %d that holds %s for its own", decoyPID, addr)
			}
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			pid, err := serverPID(t.Context(), c)
			if err != nil || pid == decoyPID {
				t.Errorf("on %s: process_id %d, %v; want a server of its own", addr, pid, err)
			}
			if asked != 2 {
				t.Errorf("asked for %d ports, want 2: the decoy's, then another", asked)
			}
		})
	}
}
