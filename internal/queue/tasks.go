package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/tasks"
)

// ListPageSize is how many tasks one Inspector call lists.
const ListPageSize = 1000

// ErrQueueNotFound is returned, wrapped, when a named queue does not exist.
var ErrQueueNotFound = errors.New("no such queue")

// ErrTaskNotFound is an Outcome's error, wrapped, for an unknown task id.
var ErrTaskNotFound = errors.New("no such task")

// States are the task states a person can ask for, in lifecycle order.
var States = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

// DeletableStates are the States whose tasks Delete and DeleteAll take:
// all but active (a running task is cancelled, not deleted).
var DeletableStates = []string{"pending", "scheduled", "retry", "archived", "completed"}

// ParseState returns the asynq state called name, which must be one of
// allowed (States, or a part of it).
func ParseState(name string, allowed []string) (asynq.TaskState, error) {
	if slices.Contains(allowed, name) {
		for _, s := range []asynq.TaskState{
			asynq.TaskStatePending, asynq.TaskStateActive, asynq.TaskStateScheduled,
			asynq.TaskStateRetry, asynq.TaskStateArchived, asynq.TaskStateCompleted,
		} {
			if s.String() == name {
				return s, nil
			}
		}
	}
	return 0, fmt.Errorf("state %q: want one of %s", name, strings.Join(allowed, ", "))
}

// Task is what tickerq shows of one task.
type Task struct {
	ID     string `json:"id"`
	Symbol string `json:"symbol"` // empty if the task is not a readable quote:fetch
	Queue  string `json:"queue"`
	State  string `json:"state"`
	// Error is the last error, for a task that has failed at least once.
	Error string `json:"error,omitempty"`
	// LastFailedAt is when it last failed.
	LastFailedAt *time.Time `json:"last_failed_at,omitempty"`
	// Result is what the handler wrote: raw JSON when it is JSON, else a
	// JSON string.
	Result json.RawMessage `json:"result,omitempty"`
	// NextProcessAt is when a pending, scheduled or retry task runs next.
	NextProcessAt *time.Time `json:"next_process_at,omitempty"`
	CompletedAt   *time.Time `json:"completed_at,omitempty"`
	Retried       int        `json:"retried"`
	// MaxRetry is the retries the enqueuer allowed (tasks.AllowedRetries),
	// one fewer than asynq's own figure for tickerq's tasks.
	MaxRetry int `json:"max_retry"`
}

// Detail is the one-line detail people want for the task's state: the last
// error for retry and archived, the result for completed, the next run
// (RFC 3339) for scheduled, empty otherwise. Tabs and line breaks become
// spaces, so the detail fits one field of one line.
func (t Task) Detail() string {
	var s string
	switch t.State {
	case "retry", "archived":
		s = t.Error
	case "completed":
		s = string(t.Result)
		var str string
		if json.Unmarshal(t.Result, &str) == nil {
			s = str
		}
	case "scheduled":
		if t.NextProcessAt != nil {
			s = t.NextProcessAt.Format(time.RFC3339)
		}
	}
	return strings.Join(strings.Fields(s), " ")
}

// NewTask converts what the Inspector returned.
func NewTask(info *asynq.TaskInfo) Task {
	t := Task{
		ID:       info.ID,
		Queue:    info.Queue,
		State:    info.State.String(),
		Error:    info.LastErr,
		Retried:  info.Retried,
		MaxRetry: tasks.AllowedRetries(info.Headers, info.MaxRetry),
	}
	if info.Type == tasks.TypeQuoteFetch {
		if p, err := tasks.ParseQuoteFetchPayload(info.Payload); err == nil {
			t.Symbol = p.Symbol
		}
	}
	if len(info.Result) > 0 {
		if json.Valid(info.Result) {
			t.Result = json.RawMessage(info.Result)
		} else if b, err := json.Marshal(string(info.Result)); err == nil {
			t.Result = b
		}
	}
	t.LastFailedAt = timeOrNil(info.LastFailedAt)
	t.NextProcessAt = timeOrNil(info.NextProcessAt)
	t.CompletedAt = timeOrNil(info.CompletedAt)
	return t
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// List calls fn with the tasks of queue in state, a page at a time, until
// limit tasks were passed (limit <= 0: all of them). Tasks that move between
// pages while List runs may be seen twice or not at all, as with any listing
// of a changing queue. A queue that does not exist gives ErrQueueNotFound.
func List(ctx context.Context, inspector *asynq.Inspector, queue string, state asynq.TaskState, limit int, fn func([]Task) error) error {
	list, err := lister(inspector, state)
	if err != nil {
		return err
	}
	size := ListPageSize
	if limit > 0 && limit < size {
		size = limit
	}
	seen := 0
	for page := 1; ; page++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		infos, err := list(queue, asynq.PageSize(size), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return queueNotFound(inspector, queue)
		}
		if err != nil {
			return fmt.Errorf("list %s tasks of queue %s: %w", state, queue, err)
		}
		if limit > 0 && seen+len(infos) > limit {
			infos = infos[:limit-seen]
		}
		batch := make([]Task, len(infos))
		for i, info := range infos {
			batch[i] = NewTask(info)
		}
		if err := fn(batch); err != nil {
			return err
		}
		seen += len(infos)
		if len(infos) < size || (limit > 0 && seen >= limit) {
			return nil
		}
	}
}

type listFunc func(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)

func lister(inspector *asynq.Inspector, state asynq.TaskState) (listFunc, error) {
	switch state {
	case asynq.TaskStatePending:
		return inspector.ListPendingTasks, nil
	case asynq.TaskStateActive:
		return inspector.ListActiveTasks, nil
	case asynq.TaskStateScheduled:
		return inspector.ListScheduledTasks, nil
	case asynq.TaskStateRetry:
		return inspector.ListRetryTasks, nil
	case asynq.TaskStateArchived:
		return inspector.ListArchivedTasks, nil
	case asynq.TaskStateCompleted:
		return inspector.ListCompletedTasks, nil
	}
	return nil, fmt.Errorf("cannot list tasks in state %s", state)
}

// queueNotFound is the error for a queue that does not exist, naming those
// that do.
func queueNotFound(inspector queueInspector, queue string) error {
	names, err := inspector.Queues()
	if err != nil || len(names) == 0 {
		return fmt.Errorf("queue %s: %w", queue, ErrQueueNotFound)
	}
	slices.Sort(names)
	return fmt.Errorf("queue %s: %w (queues: %s)", queue, ErrQueueNotFound, strings.Join(names, ", "))
}

// Outcome is what an operation did to one task.
type Outcome struct {
	ID   string
	Task Task  // as found before the operation; zero if not found
	Err  error // nil if done; wraps ErrTaskNotFound for an unknown id
}

// Retry moves each archived or retry task of queue named by ids to pending.
// A task in another state is left alone and its Outcome says why.
func Retry(ctx context.Context, inspector *asynq.Inspector, queue string, ids []string) ([]Outcome, error) {
	return each(ctx, inspector, queue, ids, func(t Task) error {
		if t.State != "archived" && t.State != "retry" {
			return fmt.Errorf("task %s is %s, not archived or retry: not retried", t.ID, t.State)
		}
		return inspector.RunTask(queue, t.ID)
	})
}

// Delete deletes each task of queue named by ids that is in state. A task
// in another state is left alone, so an id copied from a stale listing does
// not delete a task that has moved on.
func Delete(ctx context.Context, inspector *asynq.Inspector, queue string, state asynq.TaskState, ids []string) ([]Outcome, error) {
	if state == asynq.TaskStateActive {
		return nil, errors.New("active tasks cannot be deleted: cancel them")
	}
	return each(ctx, inspector, queue, ids, func(t Task) error {
		if t.State != state.String() {
			return fmt.Errorf("task %s is %s, not %s: not deleted", t.ID, t.State, state)
		}
		return inspector.DeleteTask(queue, t.ID)
	})
}

// DeleteAll deletes every task of queue in state and returns how many.
func DeleteAll(ctx context.Context, inspector *asynq.Inspector, queue string, state asynq.TaskState) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := queueExists(inspector, queue); err != nil {
		return 0, err
	}
	var n int
	var err error
	switch state {
	case asynq.TaskStatePending:
		n, err = inspector.DeleteAllPendingTasks(queue)
	case asynq.TaskStateScheduled:
		n, err = inspector.DeleteAllScheduledTasks(queue)
	case asynq.TaskStateRetry:
		n, err = inspector.DeleteAllRetryTasks(queue)
	case asynq.TaskStateArchived:
		n, err = inspector.DeleteAllArchivedTasks(queue)
	case asynq.TaskStateCompleted:
		n, err = inspector.DeleteAllCompletedTasks(queue)
	default:
		return 0, fmt.Errorf("%s tasks cannot be deleted: cancel them", state)
	}
	if err != nil {
		return n, fmt.Errorf("delete %s tasks of queue %s: %w", state, queue, err)
	}
	return n, nil
}

// RetryAllArchived moves every archived task of queue to pending and
// returns how many.
func RetryAllArchived(ctx context.Context, inspector *asynq.Inspector, queue string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := queueExists(inspector, queue); err != nil {
		return 0, err
	}
	n, err := inspector.RunAllArchivedTasks(queue)
	if err != nil {
		return n, fmt.Errorf("retry archived tasks of queue %s: %w", queue, err)
	}
	return n, nil
}

// Cancel sends a cancellation to each active task named by ids, whatever its
// queue. A task that is not active (or not found) is not signalled and its
// Outcome says where it is. Cancelling is best effort: the worker running
// the task cancels its context, and the task then fails and is retried
// under its retry policy like any other failure.
func Cancel(ctx context.Context, inspector *asynq.Inspector, ids []string) ([]Outcome, error) {
	names, err := inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	active := map[string]Task{}
	for _, q := range names {
		err := List(ctx, inspector, q, asynq.TaskStateActive, 0, func(batch []Task) error {
			for _, t := range batch {
				active[t.ID] = t
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrQueueNotFound) { // a queue removed meanwhile
			return nil, err
		}
	}
	out := make([]Outcome, len(ids))
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return out[:i], err
		}
		out[i].ID = id
		if t, ok := active[id]; ok {
			out[i].Task = t
			if err := inspector.CancelProcessing(id); err != nil {
				out[i].Err = fmt.Errorf("cancel task %s: %w", id, err)
			}
			continue
		}
		out[i].Err = fmt.Errorf("task %s: %w in any queue", id, ErrTaskNotFound)
		for _, q := range names {
			if info, err := inspector.GetTaskInfo(q, id); err == nil {
				out[i].Task = NewTask(info)
				out[i].Err = fmt.Errorf("task %s is %s in queue %s, not active: not cancelled", id, info.State, q)
				break
			}
		}
	}
	return out, nil
}

// each looks up every id in queue and, if found, applies op to it.
func each(ctx context.Context, inspector *asynq.Inspector, queue string, ids []string, op func(Task) error) ([]Outcome, error) {
	if err := queueExists(inspector, queue); err != nil {
		return nil, err
	}
	out := make([]Outcome, len(ids))
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return out[:i], err
		}
		out[i].ID = id
		info, err := inspector.GetTaskInfo(queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			out[i].Err = fmt.Errorf("task %s: %w in queue %s", id, ErrTaskNotFound, queue)
			continue
		}
		if err != nil {
			out[i].Err = fmt.Errorf("task %s: %w", id, err)
			continue
		}
		out[i].Task = NewTask(info)
		out[i].Err = op(out[i].Task)
	}
	return out, nil
}

// queueExists returns an error wrapping ErrQueueNotFound unless queue exists.
func queueExists(inspector queueInspector, queue string) error {
	names, err := inspector.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	if !slices.Contains(names, queue) {
		return queueNotFound(inspector, queue)
	}
	return nil
}

// PauseResult says what Pause or Unpause found and did.
type PauseResult struct {
	Queue   string
	Changed bool // false: it already was paused (Pause) or running (Unpause)
	Exists  bool // false: the queue holds no tasks yet
}

// Pause stops every worker from taking new tasks from queue; tasks already
// running finish. Pausing a paused queue changes nothing. A queue that does
// not exist yet can be paused, so that it starts paused. rdb is the Redis of
// inspector, for reading whether the queue is paused.
func Pause(ctx context.Context, inspector *asynq.Inspector, rdb redis.UniversalClient, queue string) (PauseResult, error) {
	return setPaused(ctx, inspector, rdb, queue, true)
}

// Unpause lets workers take tasks from queue again. Unpausing a queue that
// is not paused changes nothing.
func Unpause(ctx context.Context, inspector *asynq.Inspector, rdb redis.UniversalClient, queue string) (PauseResult, error) {
	return setPaused(ctx, inspector, rdb, queue, false)
}

func setPaused(ctx context.Context, inspector *asynq.Inspector, rdb redis.UniversalClient, queue string, pause bool) (PauseResult, error) {
	r := PauseResult{Queue: queue}
	names, err := inspector.Queues()
	if err != nil {
		return r, fmt.Errorf("list queues: %w", err)
	}
	r.Exists = slices.Contains(names, queue)
	// The Inspector tells only of queues that hold tasks whether they are
	// paused, so read the flag asynq keeps (its base.PausedKey).
	n, err := rdb.Exists(ctx, "asynq:{"+queue+"}:paused").Result()
	if err != nil {
		return r, fmt.Errorf("read whether queue %s is paused: %w", queue, err)
	}
	if (n == 1) == pause {
		return r, nil
	}
	if pause {
		err = inspector.PauseQueue(queue)
	} else {
		err = inspector.UnpauseQueue(queue)
	}
	if err != nil {
		return r, err // asynq's error names the queue
	}
	r.Changed = true
	return r, nil
}
