package testenv

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// echoServer answers every connection with what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }() // ends when the client closes
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return readN(c, len(msg), d)
}

func readN(c net.Conn, n int, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func TestProxyBlackholeHoldsThenDelivers(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	if got, err := roundTrip(open, "one", 2*time.Second); err != nil || got != "one" {
		t.Fatalf("before the blackhole: %q, %v", got, err)
	}

	p.SetBlackhole(true)
	if got, err := roundTrip(open, "two", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open connection in a blackhole: read %q, %v; want a timeout, not bytes or a close", got, err)
	}
	fresh := dial(t, p.Addr()) // accepted, like a SYN queued on a silent host
	if got, err := roundTrip(fresh, "new", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection in a blackhole: read %q, %v; want a timeout", got, err)
	}

	p.SetBlackhole(false)
	if got, err := readN(open, 3, 2*time.Second); err != nil || got != "two" {
		t.Fatalf("after the blackhole, held bytes: %q, %v; want \"two\"", got, err)
	}
	if got, err := readN(fresh, 3, 2*time.Second); err != nil || got != "new" {
		t.Fatalf("after the blackhole, new connection: %q, %v; want \"new\"", got, err)
	}
	if got, err := roundTrip(open, "three", 2*time.Second); err != nil || got != "three" {
		t.Fatalf("after the blackhole: %q, %v", got, err)
	}
}

func TestProxyCutEndsBlackhole(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	p.SetBlackhole(true)
	p.SetDown(true)
	if _, err := readN(c, 1, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a cut during a blackhole: %v; want the connection closed", err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		if _, err := readN(c2, 1, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("new connection while down: %v; want it closed at once", err)
		}
		_ = c2.Close()
	}
	p.SetDown(false)
	c3 := dial(t, p.Addr())
	if got, err := roundTrip(c3, "back", 2*time.Second); err != nil || got != "back" {
		t.Fatalf("after restore: %q, %v", got, err)
	}
}

func TestProxyRefuseAfter(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	p.RefuseAfter(1)
	first := dial(t, p.Addr())
	if got, err := roundTrip(first, "one", 2*time.Second); err != nil || got != "one" {
		t.Fatalf("first connection: %q, %v", got, err)
	}
	second := dial(t, p.Addr())
	if _, err := readN(second, 1, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second connection: %v; want it closed at once", err)
	}
	if got, err := roundTrip(first, "still", 2*time.Second); err != nil || got != "still" {
		t.Fatalf("first connection after the refusal: %q, %v; want it open", got, err)
	}
	p.SetDown(false)
	third := dial(t, p.Addr())
	if got, err := roundTrip(third, "back", 2*time.Second); err != nil || got != "back" {
		t.Fatalf("after SetDown(false): %q, %v", got, err)
	}
}

func TestProxyTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, want string
		err       error // nil: want no error
	}{
		{"postgres://postgres@127.0.0.1:5432/tq?sslmode=disable", "127.0.0.1:5432", nil},
		{"postgres://postgres@db.example/tq", "db.example:5432", nil},
		{"redis://:pw@127.0.0.1:40123/7", "127.0.0.1:40123", nil},
		{"redis://127.0.0.1/7", "127.0.0.1:6379", nil},
		{"postgres:///tq?host=/var/run/postgresql", "", errNotTCP},
		{"postgres://x/tq?host=/tmp", "", errNotTCP},
	} {
		u, err := url.Parse(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := proxyTarget(u)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("proxyTarget(%s) = %q, %v; want %q, %v", tc.raw, got, err, tc.want, tc.err)
		}
	}
}

// ProxyURL's URL is the one it was given, at the proxy, and reaches what
// the given one reaches.
func TestProxyURL(t *testing.T) {
	t.Parallel()
	raw := "postgres://u:pw@" + echoServer(t) + "/tq?sslmode=disable"
	p, got := ProxyURL(t, raw)
	want, _ := url.Parse(raw)
	want.Host = p.Addr()
	if got != want.String() {
		t.Fatalf("ProxyURL(%s) = %s, want %s", raw, got, want)
	}
	if got, err := roundTrip(dial(t, p.Addr()), "through", 5*time.Second); got != "through" {
		t.Errorf("through the proxied URL's address: echoed %q, %v", got, err)
	}
}
