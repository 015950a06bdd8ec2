package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
