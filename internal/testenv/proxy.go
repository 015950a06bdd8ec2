package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy a test can cut, blackhole and restore, to make a real
// service unreachable without stopping it for other tests.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	down      bool
	blackhole bool
	// passes is how many more connections may open before new ones are
	// refused; negative for no limit.
	passes int
	// flow is closed while bytes may flow; a blackhole replaces it with an
	// open channel that Restore (or a cut) closes.
	flow  chan struct{}
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target until the
// test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: proxy listen: %v", err)
	}
	flow := make(chan struct{})
	close(flow)
	p := &Proxy{ln: ln, target: target, flow: flow, passes: -1, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// ProxyURL starts a Proxy to the server rawURL names (a test's database or
// Redis URL from this package) and returns it with rawURL pointed at it:
// the same URL with the proxy's host:port. A server reached other than
// over TCP (a Unix socket) cannot be proxied: the test is skipped.
func ProxyURL(tb testing.TB, rawURL string) (*Proxy, string) {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatalf("testenv: proxy: parse url: %v", err)
	}
	target, err := proxyTarget(u)
	switch {
	case errors.Is(err, errNotTCP):
		tb.Skipf("testenv: %v", err)
	case err != nil:
		tb.Fatalf("testenv: proxy: %v", err)
	}
	p := NewProxy(tb, target)
	u.Host = p.Addr()
	return p, u.String()
}

// errNotTCP says that a URL names a server on a Unix socket.
var errNotTCP = errors.New("not a TCP server")

// proxyTarget is the host:port of the server u names.
func proxyTarget(u *url.URL) (string, error) {
	if u.Hostname() == "" || u.Query().Get("host") != "" {
		return "", fmt.Errorf("%s: %w", u.Redacted(), errNotTCP)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port, ok := defaultPorts[u.Scheme]
	if !ok {
		return "", fmt.Errorf("%s names no port", u.Redacted())
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// defaultPorts are the ports of URLs that name none.
var defaultPorts = map[string]string{"postgres": "5432", "postgresql": "5432", "redis": "6379", "rediss": "6379"}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDown cuts (true) or restores (false) the service: while down, open
// connections are closed and new ones are closed at once, as when the
// service's host refuses them. A cut also ends a blackhole.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	p.passes = -1
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
		p.setBlackhole(false)
	}
}

// RefuseAfter lets the next n connections through and then refuses new
// ones, closing them at once, while those already open keep working: a
// service that goes away between a client's first connection and its
// next. SetDown(false) (or true) ends it.
func (p *Proxy) RefuseAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.passes = n
}

// SetBlackhole starts (true) or ends (false) a network partition: while it
// lasts, open connections stay open but no byte (nor a close) passes in
// either direction, and new connections are accepted but never reach the
// service, so clients hang until their own timeouts. When it ends, what was
// held back is delivered, as TCP does when a partition heals in time.
func (p *Proxy) SetBlackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setBlackhole(on)
}

func (p *Proxy) setBlackhole(on bool) {
	switch {
	case on && !p.blackhole:
		p.flow = make(chan struct{})
	case !on && p.blackhole:
		close(p.flow)
	}
	p.blackhole = on
}

// waitFlow blocks while a blackhole lasts.
func (p *Proxy) waitFlow() {
	p.mu.Lock()
	flow := p.flow
	p.mu.Unlock()
	<-flow
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down || p.passes == 0 {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		if p.passes > 0 {
			p.passes--
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	p.waitFlow() // a connection made during a blackhole hangs
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		_ = up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)

	done := make(chan struct{}, 2)
	go p.pipe(up, c, done)
	go p.pipe(c, up, done)
	<-done
	<-done
}

// pipe copies src to dst until either side is closed or cut, holding each
// read (and the close) back while a blackhole lasts.
func (p *Proxy) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.waitFlow()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.SetDown(true)
	p.wg.Wait()
}
