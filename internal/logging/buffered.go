package logging

import (
	"bufio"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Buffered is a zerolog.LevelWriter for a busy process: lines below warn
// level are collected and written together at most every interval (or
// when 64 KiB are waiting), so a worker logging every job makes one write
// call per interval instead of one per job; warnings and errors are
// written at once, after whatever is waiting, so the order stays. Close
// writes what is left. A crash loses at most the last interval's lines.
type Buffered struct {
	out  io.Writer
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewBuffered returns a Buffered writing to w, and starts the goroutine
// that writes every interval until Close.
func NewBuffered(w io.Writer, interval time.Duration) *Buffered {
	b := &Buffered{out: w, w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushEvery(interval)
	return b
}

func (b *Buffered) flushEvery(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Unwrap returns the writer written to.
func (b *Buffered) Unwrap() io.Writer { return b.out }

// Write buffers p.
func (b *Buffered) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// WriteLevel buffers p below warn level and writes it at once otherwise.
func (b *Buffered) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.w.Write(p)
	if err == nil && level >= zerolog.WarnLevel && level != zerolog.NoLevel {
		err = b.w.Flush()
	}
	return n, err
}

// Flush writes what is waiting.
func (b *Buffered) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the periodic writes and writes what is left. Later lines
// are still taken, and written by the next Flush or when the buffer fills.
func (b *Buffered) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return b.Flush()
}
