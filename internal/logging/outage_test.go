package logging

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// While Redis is known down, asynq's warnings and errors go to debug and
// are counted; before and after, they keep their level.
func TestOutageMutesAsynqWhileDown(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	o := &Outage{}
	a := Asynq{L: zerolog.New(&buf).Level(zerolog.InfoLevel), Outage: o}
	t0 := time.Now()

	a.Error("before")
	if !o.Down(t0) || o.Down(t0.Add(time.Second)) {
		t.Fatal("Down: want true for the first call only")
	}
	a.Error("Dequeue error: dial tcp: connection refused")
	a.Warn("recoverer: could not list lease expired tasks")
	a.Info("info lines keep their level")
	lasted, muted, ended := o.Up(t0.Add(25 * time.Second))
	if !ended || lasted != 25*time.Second || muted != 2 {
		t.Errorf("Up = %s, %d, %v; want 25s, 2 muted, ended", lasted, muted, ended)
	}
	if _, _, ended := o.Up(t0.Add(26 * time.Second)); ended {
		t.Error("a second Up ended an outage again")
	}
	a.Warn("after")

	got := buf.String()
	for _, want := range []string{`"level":"error","message":"before"`, `"level":"info","message":"info lines keep their level"`, `"level":"warn","message":"after"`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	if strings.Contains(got, "Dequeue") || strings.Contains(got, "recoverer") {
		t.Errorf("lines during the outage kept their level:\n%s", got)
	}
}
