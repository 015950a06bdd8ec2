package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for a Line.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestLine(t *testing.T, terminal bool) (*Line, *bytes.Buffer, *fakeClock) {
	t.Helper()
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)}
	return newLine(&buf, terminal, clock.now), &buf, clock
}

func TestLine(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		steps    func(l *Line, c *fakeClock)
		want     string
	}{
		{
			name:     "nothing in the first interval",
			terminal: true,
			steps: func(l *Line, c *fakeClock) {
				l.Set("a")
				c.advance(Interval - time.Millisecond)
				l.Set("b")
			},
			want: "",
		},
		{
			name:     "first set after the interval draws",
			terminal: true,
			steps: func(l *Line, c *fakeClock) {
				c.advance(Interval)
				l.Set("a %d", 1)
			},
			want: eraseLine + "a 1",
		},
		{
			name:     "sets within the interval are dropped",
			terminal: true,
			steps: func(l *Line, c *fakeClock) {
				c.advance(Interval)
				l.Set("a")
				c.advance(Interval / 2)
				l.Set("b")
				c.advance(Interval / 2)
				l.Set("c")
			},
			want: eraseLine + "a" + eraseLine + "c",
		},
		{
			name:     "finish always draws and ends the line once",
			terminal: true,
			steps: func(l *Line, c *fakeClock) {
				c.advance(Interval)
				l.Set("a")
				l.Finish("done %s", "x")
				l.Finish("again")
				l.Set("late")
			},
			want: eraseLine + "a" + eraseLine + "done x\n",
		},
		{
			name:     "clear erases what was drawn",
			terminal: true,
			steps: func(l *Line, c *fakeClock) {
				c.advance(Interval)
				l.Set("a")
				l.Clear()
				l.Set("late")
			},
			want: eraseLine + "a" + eraseLine,
		},
		{
			name:     "clear of an empty line writes nothing",
			terminal: true,
			steps:    func(l *Line, _ *fakeClock) { l.Clear() },
			want:     "",
		},
		{
			name:     "not a terminal: nothing",
			terminal: false,
			steps: func(l *Line, c *fakeClock) {
				l.Set("a")
				c.advance(time.Second)
				l.Set("b")
				l.Finish("done")
				l.Clear()
			},
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf, clock := newTestLine(t, tt.terminal)
			tt.steps(l, clock)
			if got := buf.String(); got != tt.want {
				t.Errorf("output = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCounter(t *testing.T) {
	l, buf, clock := newTestLine(t, true)
	c := NewCounter(l, "enqueued", 1000)
	clock.advance(time.Second)
	c.Add(100) // first draw
	clock.advance(Interval / 2)
	c.Add(100) // throttled
	clock.advance(Interval / 2)
	c.Add(50) // drawn: 250 in 1.25 s
	clock.advance(750 * time.Millisecond)
	c.Add(750) // drawn
	c.Finish() // 1000 in 2 s

	want := eraseLine + "enqueued: 100/1000 (10%), 100/s" +
		eraseLine + "enqueued: 250/1000 (25%), 200/s" +
		eraseLine + "enqueued: 1000/1000 (100%), 500/s" +
		eraseLine + "enqueued: 1000/1000 in 2s (500/s)\n"
	if got := buf.String(); got != want {
		t.Errorf("output =\n%q\nwant\n%q", got, want)
	}
}

func TestCounterDoneWithinInterval(t *testing.T) {
	l, buf, clock := newTestLine(t, true)
	c := NewCounter(l, "n", 3)
	c.Add(3)
	clock.advance(Interval / 2)
	c.Finish()
	if buf.Len() != 0 {
		t.Errorf("a count done within the interval wrote %q", buf.String())
	}
}

func TestCounterConcurrent(t *testing.T) {
	l, buf, clock := newTestLine(t, true)
	c := NewCounter(l, "n", 800)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				clock.advance(10 * time.Millisecond)
				c.Add(1)
			}
		})
	}
	wg.Wait()
	c.Finish()
	out := buf.String()
	if !strings.HasSuffix(out, eraseLine+"n: 800/800 in 8s (100/s)\n") {
		t.Errorf("final line: got %q", out[strings.LastIndex(out, eraseLine):])
	}
	// 8 s of updates at most 4 a second, plus the first and the final line.
	if draws := strings.Count(out, eraseLine); draws > 8*4+2 {
		t.Errorf("%d draws in 8 s, want at most %d", draws, 8*4+2)
	}
}

func TestCounterNotTerminal(t *testing.T) {
	l, buf, _ := newTestLine(t, false)
	c := NewCounter(l, "n", 3)
	c.Add(3)
	c.Finish()
	if buf.Len() != 0 {
		t.Errorf("wrote %q to a non-terminal", buf.String())
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name string
		w    io.Writer
	}{
		{"buffer", &bytes.Buffer{}},
		{"regular file", f},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if IsTerminal(tt.w) {
				t.Errorf("IsTerminal(%s) = true", tt.name)
			}
		})
	}
}
