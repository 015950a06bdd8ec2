package logging

import (
	"sync"
	"time"
)

// Outage holds whether a service the program depends on (Redis, for the
// worker) is known to be unreachable, as a watcher finds it (broker.Watch).
// While it is, the watcher has said so in one line, and the Asynq adapter
// logs asynq's warnings and errors at debug, counted, instead of repeating
// the outage several times a second. Its methods are safe for concurrent
// use; the zero value is a service that is up.
type Outage struct {
	mu    sync.Mutex
	since time.Time // zero while up
	muted int       // asynq lines logged at debug since the outage began
}

// Down records that the service stopped answering at now, and reports
// whether it was up until then.
func (o *Outage) Down(now time.Time) (began bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		return false
	}
	o.since, o.muted = now, 0
	return true
}

// Up records that the service answers again at now. When it was down, it
// reports for how long and how many asynq lines went to debug meanwhile.
func (o *Outage) Up(now time.Time) (lasted time.Duration, muted int, ended bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return 0, 0, false
	}
	lasted, muted = now.Sub(o.since), o.muted
	o.since, o.muted = time.Time{}, 0
	return lasted, muted, true
}

// mutes reports whether a line should go to debug because the service is
// down, and counts it.
func (o *Outage) mutes() bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return false
	}
	o.muted++
	return true
}
