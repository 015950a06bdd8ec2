package tracing

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
)

// logLines collects log lines; safe for concurrent use.
type logLines struct {
	mu sync.Mutex
	l  []string
}

func (b *logLines) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.l = append(b.l, string(p))
	return len(p), nil
}

func (b *logLines) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.l...)
}

// waitLines waits until b holds n lines, failing after a wide bound.
func waitLines(t *testing.T, b *logLines, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.lines()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines, want %d: %q", len(b.lines()), n, b.lines())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return b.lines()
}

var errExport = errors.New("traces export: connection refused")

// A running program says the first failed export at once, then at most
// one line each interval counting those since the last, and the rest when
// it stops.
func TestExportReportWhileRunning(t *testing.T) {
	t.Parallel()
	var out logLines
	r := &exportReport{endpoint: "http://collector:4318 (+ /v1/traces)", every: 200 * time.Millisecond, log: zerolog.New(&out)}
	r.Handle(errExport)
	first := waitLines(t, &out, 1)[0]
	if !strings.Contains(first, `"failed_exports":1`) || !strings.Contains(first, "http://collector:4318") ||
		!strings.Contains(first, "connection refused") {
		t.Errorf("first line: %s", first)
	}
	for range 3 {
		r.Handle(errExport)
	}
	if n := len(out.lines()); n != 1 {
		t.Fatalf("%d lines right after four failures, want 1: %q", n, out.lines())
	}
	second := waitLines(t, &out, 2)[1]
	if !strings.Contains(second, `"failed_exports":3`) || !strings.Contains(second, "3 exports of spans failed since the last line") {
		t.Errorf("second line: %s", second)
	}
	r.Handle(errExport)
	r.stop()
	lines := out.lines()
	if len(lines) != 3 || !strings.Contains(lines[2], `"failed_exports":1`) {
		t.Fatalf("after stop: %q; want a third line counting the one failure left", lines)
	}
	r.Handle(errExport) // after stop: not said
	time.Sleep(300 * time.Millisecond)
	if n := len(out.lines()); n != 3 {
		t.Errorf("%d lines after a failure past stop, want 3", n)
	}
}

// A short command says nothing while it runs and one line when it stops,
// if anything failed.
func TestExportReportAtExit(t *testing.T) {
	t.Parallel()
	for _, failures := range []int{0, 1, 3} {
		var out logLines
		var atExit []string
		r := &exportReport{endpoint: "http://c:4318/v1/traces", every: time.Nanosecond, log: zerolog.New(&out),
			atExit: func(l string) { atExit = append(atExit, l) }}
		for range failures {
			r.Handle(errExport)
		}
		r.stop()
		if len(out.lines()) != 0 {
			t.Errorf("%d failures: logged %q, want nothing", failures, out.lines())
		}
		switch {
		case failures == 0 && len(atExit) != 0:
			t.Errorf("no failure: at exit %q, want nothing", atExit)
		case failures == 1 && (len(atExit) != 1 || atExit[0] != "tracing: could not export spans to http://c:4318/v1/traces: "+errExport.Error()):
			t.Errorf("one failure: at exit %q", atExit)
		case failures == 3 && (len(atExit) != 1 || !strings.HasPrefix(atExit[0], "tracing: 3 exports of spans to http://c:4318/v1/traces failed")):
			t.Errorf("three failures: at exit %q", atExit)
		}
	}
}

// A last flush that runs out of time does not hide the cause the exports
// before it failed with.
func TestExportReportFlushTimeoutKeepsTheCause(t *testing.T) {
	t.Parallel()
	var atExit []string
	r := &exportReport{endpoint: "http://c:4318/v1/traces", every: time.Nanosecond, log: zerolog.Nop(),
		atExit: func(l string) { atExit = append(atExit, l) }}
	r.Handle(errExport)
	r.flushFailed(context.DeadlineExceeded)
	r.stop()
	if len(atExit) != 1 || !strings.HasPrefix(atExit[0], "tracing: 2 exports of spans to http://c:4318/v1/traces failed, the last: "+errExport.Error()) ||
		!strings.Contains(atExit[0], "ran out of time") {
		t.Errorf("at exit %q, want the export's cause and the flush's timeout", atExit)
	}

	atExit = nil
	r = &exportReport{endpoint: "e", every: time.Nanosecond, log: zerolog.Nop(), atExit: func(l string) { atExit = append(atExit, l) }}
	r.flushFailed(context.DeadlineExceeded) // nothing before it: the timeout is all there is to say
	r.stop()
	if len(atExit) != 1 || !strings.Contains(atExit[0], "last flush: context deadline exceeded") {
		t.Errorf("a lone flush timeout: at exit %q", atExit)
	}
}

// With a collector that refuses connections, the spans of a short command
// are said lost in one line at stop, naming the endpoint without its
// credentials. Not parallel: it sets the process's OTEL_* variables and the
// global tracer provider.
func TestStartReportsRefusedCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // now it refuses
	t.Setenv(EnvEndpoint, "http://user:s3cret@"+addr)
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	var out logLines
	var atExit []string
	stop, err := Start(context.Background(), os.Getenv, Options{Service: "test", Log: zerolog.New(&out),
		AtExit: func(l string) { atExit = append(atExit, l) }})
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer().Start(context.Background(), "lost")
	span.End()
	stop()
	if len(atExit) != 1 || !strings.Contains(atExit[0], "could not export spans to http://"+addr) ||
		!strings.Contains(atExit[0], "connection refused") {
		t.Fatalf("at exit: %q; want one line naming %s and the refusal", atExit, addr)
	}
	for _, l := range append(out.lines(), atExit...) {
		if strings.Contains(l, "s3cret") {
			t.Errorf("credentials shown: %s", l)
		}
	}
}
