// Package progress shows how far a long command has got on a terminal: one
// status line, rewritten in place at most a few times a second, then a final
// line. On anything but a terminal (a file, a pipe, a test's buffer) it
// writes nothing at all, so scripts and logs see only the command's own
// output.
//
// A Line is the status line itself, for any text:
//
//	l := progress.NewLine(os.Stderr, progress.IsTerminal(os.Stderr))
//	l.Set("waiting: %d tasks left", n) // drawn only if Interval has passed
//	l.Finish("done in %s", d)          // always drawn, ends the line
//
// Nothing is drawn in the first Interval, so a command that is done by then
// shows no progress.
//
// A Counter draws "LABEL: DONE/TOTAL (P%), R/s" on a Line from concurrent
// Add calls; Counter.Finish ends it with the total and the mean rate, or, if
// nothing was drawn yet, leaves it empty.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Interval is the least time between two redraws of a Line: at most four
// updates a second.
const Interval = 250 * time.Millisecond

// eraseLine moves to the start of the line and clears it (ANSI CR, EL).
const eraseLine = "\r\x1b[K"

// IsTerminal reports whether w is a terminal (an *os.File on a tty or a
// Cygwin/MSYS pty), the only place a Line draws.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Line is one status line rewritten in place. Its methods are safe for
// concurrent use. A Line whose terminal flag is false writes nothing.
type Line struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	now      func() time.Time
	last     time.Time // when the line was last drawn, or made
	drawn    bool      // something is on the line
	finished bool
}

// NewLine returns a Line writing to w; terminal says whether w is a
// terminal (usually IsTerminal(w)). Pass false to turn it off.
func NewLine(w io.Writer, terminal bool) *Line {
	return newLine(w, terminal, time.Now)
}

func newLine(w io.Writer, terminal bool, now func() time.Time) *Line {
	return &Line{w: w, terminal: terminal, now: now, last: now()}
}

// Enabled reports whether the Line draws anything.
func (l *Line) Enabled() bool { return l.terminal }

// Set replaces the line's text, unless it was drawn (or made) less than
// Interval ago. Nothing is drawn after Finish or Clear.
func (l *Line) Set(format string, args ...any) {
	if !l.terminal {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	now := l.now()
	if now.Sub(l.last) < Interval {
		return
	}
	l.last, l.drawn = now, true
	fmt.Fprintf(l.w, eraseLine+format, args...)
}

// Finish replaces the line's text a last time, whatever the interval, and
// ends it with a newline. Later calls do nothing.
func (l *Line) Finish(format string, args ...any) {
	l.end(func() { fmt.Fprintf(l.w, eraseLine+format+"\n", args...) })
}

// Clear erases the line, leaving the cursor where it started, so other
// output can follow as if it had never been drawn. Later calls do nothing.
func (l *Line) Clear() {
	l.end(func() {
		if l.drawn {
			fmt.Fprint(l.w, eraseLine)
		}
	})
}

// end runs draw once, the first time the line is finished or cleared.
func (l *Line) end(draw func()) {
	if !l.terminal {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	l.finished = true
	draw()
}

// Counter counts items done out of a known total and shows the count, the
// share and the rate on a Line. Its methods are safe for concurrent use.
type Counter struct {
	line  *Line
	label string
	total int

	mu    sync.Mutex
	done  int
	start time.Time
}

// NewCounter returns a Counter of total items drawn on line as
// "LABEL: DONE/TOTAL (P%), R/s". Its clock starts now.
func NewCounter(line *Line, label string, total int) *Counter {
	return &Counter{line: line, label: label, total: total, start: line.now()}
}

// Add counts n more items done and redraws the line if Interval has passed.
func (c *Counter) Add(n int) {
	if !c.line.terminal {
		return
	}
	c.mu.Lock()
	c.done += n
	done := c.done
	c.mu.Unlock()
	elapsed := c.line.now().Sub(c.start)
	c.line.Set("%s: %d/%d (%d%%), %s/s", c.label, done, c.total, percent(done, c.total), rate(done, elapsed))
}

// Finish ends the line with "LABEL: DONE/TOTAL in D (R/s)", or writes
// nothing if the line was never drawn (all was done within Interval). Later
// calls do nothing.
func (c *Counter) Finish() {
	if !c.line.terminal {
		return
	}
	c.line.mu.Lock()
	drawn := c.line.drawn
	c.line.mu.Unlock()
	if !drawn {
		c.line.Clear()
		return
	}
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	elapsed := c.line.now().Sub(c.start)
	c.line.Finish("%s: %d/%d in %s (%s/s)", c.label, done, c.total, elapsed.Round(time.Millisecond), rate(done, elapsed))
}

func percent(done, total int) int {
	if total <= 0 {
		return 100
	}
	return done * 100 / total
}

// rate formats done per second over elapsed, without decimals past 100/s.
func rate(done int, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "-"
	}
	r := float64(done) / elapsed.Seconds()
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}
