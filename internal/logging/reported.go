package logging

import (
	"strings"
	"sync"
	"time"
)

// asynq's warnings that repeat the end of a job which the worker's own job
// line (package middleware) has already logged with its outcome, as asynq
// v0.26 words them (processor.go, handleFailedMessage).
var endPrefixes = []string{
	"Retry exhausted for task id=", // archived
	"revoke task id=",              // dropped (stale)
}

// reportedTTL is how long Reported remembers a task. asynq logs its warning
// right after the handler returns; an entry it never asks about (its lease
// had expired, so it did not archive the task) is forgotten after this.
const reportedTTL = time.Minute

// sweepAt is the size at which Add forgets entries older than reportedTTL.
const sweepAt = 1024

// Reported remembers the tasks whose end the worker's job line has already
// logged (archived, or dropped as stale), so that the Asynq adapter leaves
// out asynq's own warning saying the same for the same task:
// "Retry exhausted for task id=ID" and "revoke task id=ID". asynq's other
// messages, and these for tasks not reported, are kept. Its methods are safe
// for concurrent use; the zero value is ready to use.
type Reported struct {
	mu  sync.Mutex
	ids map[string]time.Time // task id -> when reported
}

// Add records that the job line of task id has logged its end.
func (r *Reported) Add(id string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[string]time.Time)
	}
	if len(r.ids) >= sweepAt {
		for k, at := range r.ids {
			if now.Sub(at) > reportedTTL {
				delete(r.ids, k)
			}
		}
	}
	r.ids[id] = now
}

// repeats reports whether msg is asynq's warning about the end of a task
// that was reported, and then forgets the task.
func (r *Reported) repeats(msg string) bool {
	if r == nil {
		return false
	}
	for _, p := range endPrefixes {
		id, ok := strings.CutPrefix(msg, p)
		if !ok {
			continue
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.ids[id]; !ok {
			return false
		}
		delete(r.ids, id)
		return true
	}
	return false
}
