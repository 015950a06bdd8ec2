package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
)

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level, format string
		ok            bool
	}{
		{"debug", "json", true},
		{"", "", true},
		{"WARN", "console", true},
		{"error", "json", true},
		{"loud", "json", false},
		{"info", "xml", false},
	} {
		_, err := New(&bytes.Buffer{}, tc.level, tc.format)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("New(%q, %q) error = %v, want ok=%v", tc.level, tc.format, err, tc.ok)
		}
	}
}

func TestConsoleHasNoColourOffTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("k", "v").Msg("hello")
	if strings.Contains(buf.String(), "\x1b[") || !strings.Contains(buf.String(), "hello") {
		t.Fatalf("console output %q: want plain text", buf.String())
	}
}

func TestAdapters(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	var a asynq.Logger = Asynq{L: log}
	a.Warn("lease ", "expired")
	Redis{L: log, Level: zerolog.DebugLevel}.Printf(context.Background(), "dial %s: %v", "x", errors.New("refused"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	for i, want := range []map[string]string{
		{"level": "warn", "message": "lease expired"},
		{"level": "debug", "message": "dial x: refused", "component": "go-redis"},
	} {
		var ev map[string]string
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if ev[k] != v {
				t.Errorf("line %d: %s = %q, want %q", i, k, ev[k], v)
			}
		}
	}
	if AsynqLevel(zerolog.WarnLevel) != asynq.WarnLevel || AsynqLevel(zerolog.DebugLevel) != asynq.DebugLevel {
		t.Error("AsynqLevel mapping")
	}
}

func TestBufferedKeepsOrderAndFlushes(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	b := NewBuffered(&out, time.Hour) // no periodic write during the test
	log := zerolog.New(b)
	log.Info().Msg("one")
	log.Debug().Msg("two")
	if got := out.String(); got != "" {
		t.Fatalf("info and debug lines written at once: %q", got)
	}
	log.Warn().Msg("three") // written at once, after what waits
	if got := out.String(); !strings.Contains(got, `"one"`) || !strings.Contains(got, `"two"`) ||
		strings.Index(got, `"one"`) > strings.Index(got, `"three"`) {
		t.Fatalf("after a warning: %q; want one, two, three in order", got)
	}
	log.Info().Msg("four")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasSuffix(strings.TrimSpace(got), `"message":"four"}`) {
		t.Fatalf("after Close: %q; want the last line written", got)
	}
}

func TestBufferedWritesEveryInterval(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	b := NewBuffered(&out, 10*time.Millisecond)
	defer b.Close()
	log := zerolog.New(b)
	log.Info().Msg("later")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "later") {
		if time.Now().After(deadline) {
			t.Fatal("an info line was not written within 5 s of a 10 ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the flushing goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
