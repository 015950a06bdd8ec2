package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// DefaultPoll is how often Wait polls when given poll <= 0.
const DefaultPoll = 100 * time.Millisecond

// ErrTimeout is returned, wrapped, when Wait's context deadline passes
// before the queues drain.
var ErrTimeout = errors.New("timed out")

// QueueStats is a snapshot of one queue. Processed and Failed are all-time
// totals; the other fields count the tasks in each state now.
type QueueStats struct {
	Queue     string `json:"queue"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
	Processed int    `json:"processed"`
	Failed    int    `json:"failed"`
}

// Outstanding is the number of tasks still to run: pending, active,
// scheduled or waiting to retry.
func (s QueueStats) Outstanding() int {
	return s.Pending + s.Active + s.Scheduled + s.Retry
}

// Stats returns a snapshot of every queue, sorted by name. It is never nil.
func Stats(ctx context.Context, inspector *asynq.Inspector) ([]QueueStats, error) {
	infos, err := every(ctx, inspector)
	if err != nil {
		return nil, err
	}
	return asStats(infos), nil
}

// queueInspector is what this package asks of an *asynq.Inspector where a
// queue may change between two calls (come or go, a task start): an
// interface, so that a test can make that happen between two given calls.
type queueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	Servers() ([]*asynq.ServerInfo, error)
	DeleteAllCompletedTasks(queue string) (int, error)
	DeleteQueue(queue string, force bool) error
}

// every reads every queue, sorted by name. A queue deleted between the
// list and its read is left out.
func every(ctx context.Context, inspector queueInspector) ([]*asynq.QueueInfo, error) {
	names, err := inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	return snapshot(ctx, inspector, names, false)
}

// snapshot reads the named queues in order. A queue that does not exist is
// reported as empty (a QueueInfo with only its name) if keepMissing, else
// left out.
func snapshot(ctx context.Context, inspector queueInspector, names []string, keepMissing bool) ([]*asynq.QueueInfo, error) {
	out := make([]*asynq.QueueInfo, 0, len(names))
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, ok, err := queueInfo(inspector, name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, info)
		} else if keepMissing {
			out = append(out, &asynq.QueueInfo{Queue: name})
		}
	}
	return out, nil
}

// queueInfo reads one queue; ok is false if it does not exist.
func queueInfo(inspector queueInspector, name string) (info *asynq.QueueInfo, ok bool, err error) {
	info, err = inspector.GetQueueInfo(name)
	if err != nil {
		// asynq reports a missing queue with an error type of its internal
		// package, so ask the queue list instead of matching the message.
		names, lerr := inspector.Queues()
		if lerr == nil && !slices.Contains(names, name) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("queue %s: %w", name, err)
	}
	return info, true, nil
}

// asStats is what Stats tells of each of infos.
func asStats(infos []*asynq.QueueInfo) []QueueStats {
	out := make([]QueueStats, len(infos))
	for i, info := range infos {
		out[i] = QueueStats{
			Queue:     info.Queue,
			Pending:   info.Pending,
			Active:    info.Active,
			Scheduled: info.Scheduled,
			Retry:     info.Retry,
			Archived:  info.Archived,
			Completed: info.Completed,
			Processed: info.ProcessedTotal,
			Failed:    info.FailedTotal,
		}
	}
	return out
}

// Wait polls every poll (DefaultPoll if poll <= 0) until no task in the named
// queues is pending, active, scheduled or waiting to retry, and returns the
// queues it watched at its last look, sorted. With no names it watches
// every queue that exists at each poll; a named queue that does not exist
// yet counts as empty. When ctx's deadline passes first, Wait returns an
// error wrapping ErrTimeout that names each queue still holding such tasks,
// with their counts, and says when no running worker serves it; when ctx
// is cancelled it returns ctx.Err(), wrapped. started, if not nil, is
// called once, after the first look, with the queues watched then.
func Wait(ctx context.Context, inspector *asynq.Inspector, queues []string, poll time.Duration, started func(watched []string)) ([]string, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	var busy []QueueStats // as of the last complete poll
	for {
		watched, now, err := outstanding(ctx, inspector, queues)
		if err != nil {
			if ctx.Err() != nil {
				return nil, stopped(ctx, inspector, busy)
			}
			return nil, fmt.Errorf("wait: %w", err)
		}
		if started != nil {
			started(watched)
			started = nil
		}
		if len(now) == 0 {
			return watched, nil
		}
		busy = now
		select {
		case <-ctx.Done():
			return nil, stopped(ctx, inspector, busy)
		case <-ticker.C:
		}
	}
}

// outstanding returns the watched queues, sorted, and those of them that
// still have tasks to run.
func outstanding(ctx context.Context, inspector *asynq.Inspector, queues []string) (watched []string, busy []QueueStats, err error) {
	var infos []*asynq.QueueInfo
	if len(queues) == 0 {
		infos, err = every(ctx, inspector)
	} else {
		infos, err = snapshot(ctx, inspector, queues, true)
	}
	if err != nil {
		return nil, nil, err
	}
	all := asStats(infos)
	for _, s := range all {
		watched = append(watched, s.Queue)
	}
	slices.Sort(watched)
	return slices.Compact(watched), slices.DeleteFunc(all, func(s QueueStats) bool { return s.Outstanding() == 0 }), nil
}

func stopped(ctx context.Context, inspector *asynq.Inspector, busy []QueueStats) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("wait: %w", ctx.Err())
	}
	if len(busy) == 0 {
		return ErrTimeout
	}
	servers, err := inspector.Servers()
	parts := make([]string, len(busy))
	for i, s := range busy {
		parts[i] = fmt.Sprintf("%s (pending %d, active %d, scheduled %d, retry %d", s.Queue, s.Pending, s.Active, s.Scheduled, s.Retry)
		if err == nil && ServedBy(servers, s.Queue) == 0 {
			parts[i] += "; " + unserved("it")
		}
		parts[i] += ")"
	}
	return fmt.Errorf("%w; still outstanding: %s", ErrTimeout, strings.Join(parts, ", "))
}
