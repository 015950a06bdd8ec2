package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

func TestQueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustEnqueue(t, b, symbolsN(2), asynq.Queue("zeta"))
	mustEnqueue(t, b, symbolsN(1), asynq.Queue("alpha"), asynq.ProcessIn(time.Hour))
	if err := b.inspector.PauseQueue("zeta"); err != nil {
		t.Fatal(err)
	}
	runWorker(t, b, "alpha", "other")
	var got []QueueInfo
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if got, err = Queues(t.Context(), b.inspector); err != nil {
			t.Fatal(err)
		}
		if len(got) == 2 && got[0].Workers == 1 || time.Now().After(deadline) {
			break
		}
	}
	want := []QueueInfo{{Queue: "alpha", Tasks: 1, Workers: 1}, {Queue: "zeta", Tasks: 2, Paused: true}}
	if !slices.Equal(got, want) {
		t.Errorf("Queues = %+v, want %+v", got, want)
	}
}

// meanwhile is the Inspector of a Redis in which another client acts
// between two of this one's calls: right before it reads a queue's numbers
// (beforeInfo), and right after it deleted a queue's completed tasks
// (afterCompleted).
type meanwhile struct {
	*asynq.Inspector
	beforeInfo, afterCompleted func(queue string) error
}

func (m meanwhile) GetQueueInfo(queue string) (*asynq.QueueInfo, error) {
	if m.beforeInfo != nil {
		if err := m.beforeInfo(queue); err != nil {
			return nil, fmt.Errorf("test: meanwhile: %w", err)
		}
	}
	return m.Inspector.GetQueueInfo(queue)
}

func (m meanwhile) DeleteAllCompletedTasks(queue string) (int, error) {
	n, err := m.Inspector.DeleteAllCompletedTasks(queue)
	if err == nil && m.afterCompleted != nil {
		if err := m.afterCompleted(queue); err != nil {
			return n, fmt.Errorf("test: meanwhile: %w", err)
		}
	}
	return n, err
}

func TestQueuesSkipsAQueueDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustEnqueue(t, b, symbolsN(1), asynq.Queue("alpha"))
	mustEnqueue(t, b, symbolsN(2), asynq.Queue("gone"))
	mustEnqueue(t, b, symbolsN(3), asynq.Queue("zeta"))
	other := asynq.NewInspector(b.redis)
	defer other.Close()
	deleted := false
	in := meanwhile{Inspector: b.inspector, beforeInfo: func(queue string) error {
		if queue != "gone" || deleted {
			return nil
		}
		deleted = true
		return other.DeleteQueue(queue, true)
	}}
	got, err := queues(t.Context(), in)
	want := []QueueInfo{{Queue: "alpha", Tasks: 1}, {Queue: "zeta", Tasks: 3}}
	if err != nil || !slices.Equal(got, want) || !deleted {
		t.Errorf("Queues = %+v, %v (queue gone deleted meanwhile: %v); want %+v", got, err, deleted, want)
	}
}

// TestDeleteQueueTaskStartsMeanwhile: a task that starts after DeleteQueue
// counted, when the completed tasks are gone already, makes asynq refuse
// the queue; the refusal says that the completed tasks are gone.
func TestDeleteQueueTaskStartsMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testenv.HoldingWorker(t, b.redis, asynq.Config{Queues: map[string]int{"race": 1}, TaskCheckInterval: 50 * time.Millisecond},
		func(ctx context.Context, task *asynq.Task, held <-chan struct{}) error {
			if tasks.Symbol(task) == "HOLD" {
				select {
				case <-held:
				case <-ctx.Done():
				}
			}
			return nil
		})
	mustEnqueue(t, b, []string{"DONE"}, asynq.Queue("race"), asynq.Retention(time.Hour))
	if _, err := Wait(t.Context(), b.inspector, []string{"race"}, 20*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.inspector.PauseQueue("race"); err != nil {
		t.Fatal(err)
	}
	hold := mustEnqueue(t, b, []string{"HOLD"}, asynq.Queue("race"))[0]

	other := asynq.NewInspector(b.redis)
	defer other.Close()
	in := meanwhile{Inspector: b.inspector, afterCompleted: func(queue string) error {
		if err := other.UnpauseQueue(queue); err != nil {
			return err
		}
		testenv.WaitTaskState(t, b.inspector, queue, hold.ID, asynq.TaskStateActive)
		return nil
	}}
	_, err := deleteQueue(t.Context(), in, "race", true)
	var notEmpty *NotEmptyError
	const want = "queue race holds 1 task (active 1): not deleted while 1 of them run (its completed task was deleted already)"
	if !errors.As(err, &notEmpty) || notEmpty.Deleted != 1 || err.Error() != want {
		t.Errorf("DeleteQueue(race, force) = %v, want %q", err, want)
	}
	if got := statsOf(t, b, "race"); got.Active != 1 || got.Completed != 0 {
		t.Errorf("queue race after the refusal: %+v, want its task active and no completed one", got)
	}
}

func TestDeleteQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exists := func(q string) bool {
		t.Helper()
		names, err := b.inspector.Queues()
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(names, q)
	}
	ctx := t.Context()

	if _, err := DeleteQueue(ctx, b.inspector, "nosuch", true); !errors.Is(err, ErrQueueNotFound) {
		t.Errorf("DeleteQueue(nosuch) = %v, want ErrQueueNotFound", err)
	}

	// A mistyped queue nobody serves: refused without force, naming its
	// tasks; gone with force.
	mustEnqueue(t, b, []string{"IBM"}, asynq.Queue("defualt"))
	mustEnqueue(t, b, []string{"MSFT"}, asynq.Queue("defualt"), asynq.ProcessIn(time.Hour))
	_, err := DeleteQueue(ctx, b.inspector, "defualt", false)
	var notEmpty *NotEmptyError
	if !errors.As(err, &notEmpty) || err.Error() != "queue defualt holds 2 tasks (pending 1, scheduled 1): not deleted" {
		t.Errorf("DeleteQueue(defualt) = %v, want a refusal naming 2 tasks", err)
	}
	if !exists("defualt") {
		t.Fatal("refused, yet queue defualt is gone")
	}
	d, err := DeleteQueue(ctx, b.inspector, "defualt", true)
	if err != nil || d.Held.String() != "2 tasks (pending 1, scheduled 1)" || exists("defualt") {
		t.Errorf("DeleteQueue(defualt, force) = %+v, %v; want 2 tasks deleted and the queue gone", d, err)
	}
	if got, err := Stats(ctx, b.inspector); err != nil || len(got) != 0 {
		t.Errorf("Stats after the delete = %+v, %v; want no queue", got, err)
	}

	// Completed tasks count, and go with the queue: asynq alone would
	// leave them in Redis for good.
	mustEnqueue(t, b, []string{"GOOG"}, asynq.Queue("done"), asynq.Retention(time.Hour))
	runWorker(t, b, "done")
	if _, err := Wait(ctx, b.inspector, []string{"done"}, 20*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := DeleteQueue(ctx, b.inspector, "done", false); !errors.As(err, &notEmpty) || notEmpty.Held.Completed != 1 {
		t.Errorf("DeleteQueue(done) = %v, want a refusal naming 1 completed task", err)
	}
	if err := b.inspector.PauseQueue("done"); err != nil {
		t.Fatal(err)
	}
	d, err = DeleteQueue(ctx, b.inspector, "done", true)
	if err != nil || d.Held.Completed != 1 || !d.Paused || d.Workers != 1 {
		t.Errorf("DeleteQueue(done, force) = %+v, %v; want 1 completed task deleted, paused, 1 worker", d, err)
	}
	if n, err := redisClient(t, b).Exists(ctx, "asynq:{done}:completed").Result(); err != nil || n != 0 {
		t.Errorf("the completed set of queue done: exists %d (%v), want deleted", n, err)
	}

	// A running task is never deleted, with force or without.
	release := testenv.HoldingWorker(t, b.redis, asynq.Config{Concurrency: 2, Queues: map[string]int{"busy": 1}},
		func(ctx context.Context, _ *asynq.Task, held <-chan struct{}) error {
			select {
			case <-held:
			case <-ctx.Done():
			}
			return nil
		})
	res := mustEnqueue(t, b, []string{"SLOW", "NEXT"}, asynq.Queue("busy"))
	testenv.WaitTaskState(t, b.inspector, "busy", res[0].ID, asynq.TaskStateActive)
	for _, force := range []bool{false, true} {
		_, err := DeleteQueue(ctx, b.inspector, "busy", force)
		if !errors.As(err, &notEmpty) || notEmpty.Held.Active == 0 || !exists("busy") {
			t.Errorf("DeleteQueue(busy, force %v) = %v, want a refusal: tasks run", force, err)
		}
	}
	release()
	if _, err := Wait(ctx, b.inspector, []string{"busy"}, 20*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := DeleteQueue(ctx, b.inspector, "busy", true); err != nil || exists("busy") {
		t.Errorf("DeleteQueue(busy, force) once its tasks ran = %v, want it gone", err)
	}
}

func TestCountsString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    Counts
		want string
	}{
		{Counts{}, "no tasks"},
		{Counts{Retry: 1}, "1 task (retry 1)"},
		{Counts{Pending: 2, Archived: 1, Completed: 4}, "7 tasks (pending 2, archived 1, completed 4)"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
}
