package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// lookupBatch is how many task lookups go to Redis in one pipeline.
const lookupBatch = 5000

// ErrBadTaskList is returned, wrapped, for a task list that cannot be read.
var ErrBadTaskList = errors.New("bad task list")

// TaskRef names one task as `producer enqueue` printed it.
type TaskRef struct {
	ID     string `json:"id"`
	Symbol string `json:"symbol"`
	Queue  string `json:"queue"`
}

// ReadTaskList reads the output of `producer enqueue`: lines
// ID<TAB>SYMBOL<TAB>QUEUE, or JSON objects with id, symbol and queue (one a
// line; the two forms may be mixed). Blank lines are skipped, a task named
// twice is kept once. Bad lines give an error wrapping ErrBadTaskList that
// names the line.
func ReadTaskList(r io.Reader) ([]TaskRef, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var out []TaskRef
	seen := map[TaskRef]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		ref, err := parseTaskLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadTaskList, n, err)
		}
		if !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read task list: %w", err)
	}
	return out, nil
}

func parseTaskLine(line string) (TaskRef, error) {
	var ref TaskRef
	if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "{") {
		if err := json.Unmarshal([]byte(trimmed), &ref); err != nil {
			return ref, fmt.Errorf("not a JSON task object: %w", err)
		}
	} else {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return ref, fmt.Errorf("want ID<TAB>SYMBOL<TAB>QUEUE or a JSON object, got %d tab-separated fields", len(f))
		}
		ref = TaskRef{ID: f[0], Symbol: f[1], Queue: f[2]}
	}
	if ref.ID == "" || ref.Queue == "" {
		return ref, errors.New("want a task id and a queue")
	}
	return ref, nil
}

// TaskWait is what WaitTasks saw of the tasks it waited for.
type TaskWait struct {
	Total     int
	Completed int // finished and kept for their retention
	Archived  int // failed for good
	// Gone were there at some poll and then disappeared: completed without
	// retention, or deleted.
	Gone int
	// Missing were not found at the first poll: done and deleted before the
	// wait began, or never enqueued in this Redis.
	Missing []TaskRef
	// Outstanding are still pending, active, scheduled or waiting to retry
	// when WaitTasks returns early; by queue, then state.
	Outstanding map[string]map[string][]TaskRef
}

// Done is how many tasks have left pending, active, scheduled and retry.
func (w TaskWait) Done() int { return w.Completed + w.Archived + w.Gone + len(w.Missing) }

// WaitTasks polls every poll (DefaultPoll if poll <= 0, and never more
// often than a poll takes) until each of refs
// has left pending, active, scheduled and retry: it is completed, archived,
// or no longer in Redis. Each poll reads the state of the tasks still
// outstanding in pipelined batches, one round trip per lookupBatch tasks.
// progress, if not nil, is called after every poll. When ctx's deadline
// passes first, WaitTasks returns an error wrapping ErrTimeout that says
// what is outstanding; when ctx is cancelled, ctx.Err() wrapped.
func WaitTasks(ctx context.Context, rdb redis.UniversalClient, refs []TaskRef, poll time.Duration, progress func(TaskWait)) (TaskWait, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	w := TaskWait{Total: len(refs)}
	left := refs
	timer := time.NewTimer(0)
	defer timer.Stop()
	for first := true; ; first = false {
		start := time.Now()
		states, err := TaskStates(ctx, rdb, left)
		if err != nil {
			if ctx.Err() != nil {
				return w, stoppedTasks(ctx, w)
			}
			return w, err
		}
		var keep []TaskRef
		w.Outstanding = map[string]map[string][]TaskRef{}
		for i, ref := range left {
			switch s := states[i]; s {
			case "":
				// After the first poll, left holds only tasks seen before.
				if first {
					w.Missing = append(w.Missing, ref)
				} else {
					w.Gone++
				}
			case "completed":
				w.Completed++
			case "archived":
				w.Archived++
			default:
				keep = append(keep, ref)
				if w.Outstanding[ref.Queue] == nil {
					w.Outstanding[ref.Queue] = map[string][]TaskRef{}
				}
				w.Outstanding[ref.Queue][s] = append(w.Outstanding[ref.Queue][s], ref)
			}
		}
		left = keep
		if progress != nil {
			progress(w)
		}
		if len(left) == 0 {
			w.Outstanding = nil
			return w, nil
		}
		// Rest at least as long as the poll took, so that a long list
		// keeps Redis busy no more than half the time.
		timer.Reset(max(poll, time.Since(start)))
		select {
		case <-ctx.Done():
			return w, stoppedTasks(ctx, w)
		case <-timer.C:
		}
	}
}

// TaskStates returns the state asynq records in each task's hash ("pending",
// "completed", …), "" for a task that is not there, reading them in
// pipelined batches.
func TaskStates(ctx context.Context, rdb redis.UniversalClient, refs []TaskRef) ([]string, error) {
	out := make([]string, len(refs))
	for start := 0; start < len(refs); start += lookupBatch {
		batch := refs[start:min(start+lookupBatch, len(refs))]
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, ref := range batch {
				cmds[i] = p.HGet(ctx, taskKey(ref.Queue, ref.ID), "state")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read task states: %w", err)
		}
		for i, c := range cmds {
			s, err := c.Result()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return nil, fmt.Errorf("read state of task %s: %w", batch[i].ID, err)
			default:
				out[start+i] = s
			}
		}
	}
	return out, nil
}

// taskKey is the Redis hash asynq keeps a task in (asynq's
// base.TaskKey, which is internal to asynq).
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// maxNamed caps the task ids a timeout error names.
const maxNamed = 5

func stoppedTasks(ctx context.Context, w TaskWait) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("wait: %w", ctx.Err())
	}
	var parts, named []string
	outstanding := 0
	for _, q := range slices.Sorted(maps.Keys(w.Outstanding)) {
		var counts []string
		for _, s := range slices.Concat(States, []string{"aggregating"}) {
			refs := w.Outstanding[q][s]
			if len(refs) == 0 {
				continue
			}
			outstanding += len(refs)
			counts = append(counts, fmt.Sprintf("%s %d", s, len(refs)))
			for _, r := range refs {
				if len(named) < maxNamed {
					named = append(named, fmt.Sprintf("%s %s (%s in %s)", r.ID, r.Symbol, s, q))
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", q, strings.Join(counts, ", ")))
	}
	if outstanding == 0 {
		return fmt.Errorf("%w before the first look at %d tasks", ErrTimeout, w.Total)
	}
	more := ""
	if outstanding > len(named) {
		more = fmt.Sprintf(" and %d more", outstanding-len(named))
	}
	return fmt.Errorf("%w; still outstanding: %d of %d tasks: %s; %s%s",
		ErrTimeout, outstanding, w.Total, strings.Join(parts, ", "), strings.Join(named, ", "), more)
}
