package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"
)

// QueueInfo is what Queues tells of one queue.
type QueueInfo struct {
	Queue string `json:"queue"`
	// Tasks counts the tasks it holds in every state, completed ones (kept
	// for their retention) included.
	Tasks  int  `json:"tasks"`
	Paused bool `json:"paused"`
	// Workers counts the running workers that take tasks from it.
	Workers int `json:"workers"`
}

// Queues returns every queue, sorted by name. It is never nil.
func Queues(ctx context.Context, inspector *asynq.Inspector) ([]QueueInfo, error) {
	return queues(ctx, inspector)
}

// queues is Queues through any queueInspector.
func queues(ctx context.Context, inspector queueInspector) ([]QueueInfo, error) {
	infos, err := every(ctx, inspector)
	if err != nil {
		return nil, err
	}
	servers, err := inspector.Servers()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	out := make([]QueueInfo, len(infos))
	for i, info := range infos {
		out[i] = QueueInfo{Queue: info.Queue, Tasks: held(info), Paused: info.Paused, Workers: ServedBy(servers, info.Queue)}
	}
	return out, nil
}

// held is how many tasks a queue holds, in any state.
func held(info *asynq.QueueInfo) int {
	return info.Size + info.Completed // Size: pending, active, scheduled, retry, archived, aggregating
}

// ServedBy counts the running workers among servers
// (asynq.Inspector.Servers) that take tasks from queue.
func ServedBy(servers []*asynq.ServerInfo, queue string) int {
	n := 0
	for _, s := range servers {
		if _, ok := s.Queues[queue]; ok && running(s) {
			n++
		}
	}
	return n
}

// running tells whether the worker s takes tasks: one that is "stopped"
// fetches nothing until it exits.
func running(s *asynq.ServerInfo) bool { return s.Status == "active" }

// unserved is how every message says that no running worker takes tasks
// from a queue, named by what ("queue low", "it").
func unserved(what string) string { return "no running worker serves " + what }

// Counts are a queue's tasks by state, as DeleteQueue found them.
type Counts struct {
	Pending, Active, Scheduled, Retry, Archived, Completed, Aggregating int
}

func countsOf(info *asynq.QueueInfo) Counts {
	return Counts{info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived, info.Completed, info.Aggregating}
}

// Total is the number of tasks in every state.
func (c Counts) Total() int {
	return c.Pending + c.Active + c.Scheduled + c.Retry + c.Archived + c.Completed + c.Aggregating
}

// String says how many tasks there are and in which states, e.g.
// "3 tasks (pending 1, archived 2)"; "no tasks" when there are none.
func (c Counts) String() string {
	var parts []string
	for _, s := range []struct {
		name string
		n    int
	}{
		{"pending", c.Pending}, {"active", c.Active}, {"scheduled", c.Scheduled}, {"retry", c.Retry},
		{"archived", c.Archived}, {"completed", c.Completed}, {"aggregating", c.Aggregating},
	} {
		if s.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s.name, s.n))
		}
	}
	switch n := c.Total(); n {
	case 0:
		return "no tasks"
	case 1:
		return "1 task (" + parts[0] + ")"
	default:
		return fmt.Sprintf("%d tasks (%s)", n, strings.Join(parts, ", "))
	}
}

// NotEmptyError is DeleteQueue's refusal: without force the queue holds
// tasks; with force too, some of them run.
type NotEmptyError struct {
	Queue string
	Held  Counts
	Force bool
	// Deleted counts the completed tasks that DeleteQueue, with force,
	// deleted before asynq refused the queue: a task started in between.
	Deleted int
}

func (e *NotEmptyError) Error() string {
	msg := fmt.Sprintf("queue %s holds %s: not deleted", e.Queue, e.Held)
	if e.Held.Active > 0 {
		msg += fmt.Sprintf(" while %d of them run", e.Held.Active)
	}
	return msg + alreadyDeleted(e.Deleted)
}

// alreadyDeleted says, after a refusal, that n completed tasks of the queue
// were deleted before it; "" for none.
func alreadyDeleted(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " (its completed task was deleted already)"
	default:
		return fmt.Sprintf(" (its %d completed tasks were deleted already)", n)
	}
}

// DeletedQueue says what DeleteQueue removed and what it left.
type DeletedQueue struct {
	Queue string
	// Held are the tasks deleted with the queue.
	Held Counts
	// Paused is true when the queue was paused: the pause stays, so that a
	// queue of that name created later starts paused, as Pause allows for a
	// queue that holds no task.
	Paused bool
	// Workers counts the running workers that still serve the queue: they
	// keep asking it for tasks, and a task enqueued to it brings it back.
	Workers int
}

// DeleteQueue removes queue, so that it no longer shows in Queues, Stats,
// the web UI or the worker's metrics. Without force it refuses
// (*NotEmptyError) a queue that holds any task, completed ones included.
// With force it deletes the queue's tasks with it (asynq's
// Inspector.DeleteQueue, plus the completed tasks, which asynq would leave
// behind for ever), but never while one of them runs (*NotEmptyError
// again): cancel those or let them finish first. The completed tasks go
// first, right after the count; if a task starts in between, asynq refuses
// the queue and the error says how many completed tasks are gone already.
// A queue that does not exist gives ErrQueueNotFound. The queue's all-time
// processed and failed totals stay in Redis, as asynq keeps them, and so
// does a uniqueness lock (asynq.Unique) that one of the deleted tasks held,
// until it expires.
func DeleteQueue(ctx context.Context, inspector *asynq.Inspector, queue string, force bool) (DeletedQueue, error) {
	return deleteQueue(ctx, inspector, queue, force)
}

// deleteQueue is DeleteQueue through any queueInspector.
func deleteQueue(ctx context.Context, inspector queueInspector, queue string, force bool) (DeletedQueue, error) {
	d := DeletedQueue{Queue: queue}
	if err := ctx.Err(); err != nil {
		return d, err
	}
	if err := queueExists(inspector, queue); err != nil {
		return d, err
	}
	servers, err := inspector.Servers()
	if err != nil {
		return d, fmt.Errorf("list workers: %w", err)
	}
	d.Workers = ServedBy(servers, queue)
	// The count that decides, read right before anything is deleted.
	info, err := inspector.GetQueueInfo(queue)
	if err != nil {
		return d, fmt.Errorf("queue %s: %w", queue, err)
	}
	d.Held, d.Paused = countsOf(info), info.Paused
	if d.Held.Active > 0 || (!force && d.Held.Total() > 0) {
		return d, &NotEmptyError{Queue: queue, Held: d.Held, Force: force}
	}
	deleted := 0 // completed tasks
	if force && d.Held.Completed > 0 {
		if deleted, err = inspector.DeleteAllCompletedTasks(queue); err != nil {
			return d, fmt.Errorf("delete the completed tasks of queue %s: %w", queue, err)
		}
	}
	if err := inspector.DeleteQueue(queue, force); err != nil {
		// A task started, or was enqueued, since the count: say what the
		// queue holds now, and what is gone already.
		if info, ierr := inspector.GetQueueInfo(queue); ierr == nil && (info.Active > 0 || (!force && held(info) > 0)) {
			return d, &NotEmptyError{Queue: queue, Held: countsOf(info), Force: force, Deleted: deleted}
		}
		return d, fmt.Errorf("delete queue %s%s: %w", queue, alreadyDeleted(deleted), err)
	}
	return d, nil
}
