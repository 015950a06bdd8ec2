package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/hibiken/asynq"
)

// hangUp listens on loopback and closes every connection at once, as a
// server that dies mid-call would; it returns its address.
func hangUp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	up := setup(t)
	down := asynq.RedisClientOpt{Addr: "127.0.0.1:1"}
	hung := asynq.RedisClientOpt{Addr: hangUp(t)}

	inspector := asynq.NewInspector(down)
	defer inspector.Close()
	_, dialErr := inspector.ListArchivedTasks("default") // asynq: UNKNOWN: ... SISMEMBER failed: dial tcp ...
	if dialErr == nil {
		t.Fatal("an inspector on 127.0.0.1:1 listed tasks")
	}
	_, listenErr := net.Listen("tcp", "256.0.0.1:0")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	for _, tc := range []struct {
		name string
		ctx  context.Context
		opt  asynq.RedisConnOpt
		err  error
		want string // the error's text; "" for nil
	}{
		{"dial error deep in asynq's", t.Context(), down, dialErr,
			"redis at 127.0.0.1:1 is unreachable: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"connection lost, and redis still gone", t.Context(), hung, fmt.Errorf("list: %w", io.EOF),
			"redis at " + hung.Addr + " is unreachable: EOF"},
		{"connection lost, but redis answers now", t.Context(), up.redis, fmt.Errorf("list: %w", io.EOF), ""},
		{"not from a connection", t.Context(), down, errors.New("boom"), ""},
		{"a listener's error", t.Context(), down, listenErr, ""},
		{"already said", t.Context(), down, fmt.Errorf("x: %w", &UnreachableError{Addr: "a", Err: io.EOF}), ""},
		{"interrupted", cancelled, down, dialErr, ""},
		{"no error", t.Context(), down, nil, ""},
	} {
		u := Unreachable(tc.ctx, tc.opt, tc.err)
		got := ""
		if u != nil {
			got = u.Error()
			if errors.Unwrap(u) == nil {
				t.Errorf("%s: %v does not wrap its cause", tc.name, u)
			}
		}
		if got != tc.want {
			t.Errorf("%s: Unreachable = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRedisAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want string
	}{
		{"redis://:secret@db.example:6380/2", "db.example:6380"},
		{"redis-socket:///run/redis.sock", "/run/redis.sock"},
		{"redis-sentinel://:secret@s1:26379,s2:26379?master=mymaster", "master mymaster of sentinels s1:26379,s2:26379"},
	} {
		opt, err := asynq.ParseRedisURI(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if got := RedisAddr(opt); got != tc.want {
			t.Errorf("RedisAddr(%s) = %q, want %q", tc.url, got, tc.want)
		}
	}
}
