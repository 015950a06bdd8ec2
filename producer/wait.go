package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/progress"
	"github.com/tickerq/tickerq/internal/queue"
)

type waitFlags struct {
	timeout time.Duration
	queues  []string
	tasks   string
	poll    time.Duration
}

func waitCmd(g *globals) *cobra.Command {
	var f waitFlags
	cmd := &cobra.Command{
		Use:   "wait [--timeout DURATION] [--queue Q]... | --tasks FILE",
		Short: "Wait until no task is pending, active, scheduled or waiting to retry",
		Long: `wait polls the queues until none holds a task that is pending, active,
scheduled or waiting to retry, then prints one line, e.g. "2 queues done:
critical, default", and exits 0. Archived and completed tasks do not count.
With --queue it watches only the named queues (a queue that does not exist
yet counts as empty); without, every queue. Once it has looked, stderr says
which queues it waits for, e.g. "producer: waiting up to 1m for every
queue, now critical, default".

With --tasks FILE ('-' is stdin) it waits only for the tasks listed there,
as producer enqueue printed them (ID<TAB>SYMBOL<TAB>QUEUE lines or --json
objects), saying on stderr how many in which queues, and then prints one
line: how many completed, were archived, or are no longer in Redis. A task
not found at the first look is done (it was deleted, or completed without
retention) or was never enqueued in this Redis; a task that disappears while
wait watches it completed without retention or was deleted. On a terminal,
stderr shows the progress.

On --timeout it exits 1, naming each queue (and with --tasks each task)
still outstanding with its counts, and a queue no running worker serves: a
mistyped queue, say, which producer queue delete removes. 0 means no limit.
A task list that cannot be read exits 2 naming the line.`,
		Example: `  producer enqueue --file symbols.txt && producer wait --timeout 10m
  producer wait --queue critical --queue default
  producer enqueue --file symbols.txt >enqueued.txt && producer wait --tasks enqueued.txt
  producer enqueue --json GOOG MSFT | producer wait --tasks - --timeout 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWait(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.timeout, "timeout", 0, "give up after this long and exit 1 (default 0: wait for ever)")
	fl.StringArrayVar(&f.queues, "queue", nil, "queue to watch; repeat for more (default every queue)")
	fl.StringVar(&f.tasks, "tasks", "", "wait only for the tasks in this output of producer enqueue ('-' is stdin); not with --queue")
	fl.DurationVar(&f.poll, "poll", queue.DefaultPoll, "how often to look")
	_ = fl.MarkHidden("poll")
	return cmd
}

func runWait(cmd *cobra.Command, g *globals, f *waitFlags) error {
	if f.timeout < 0 {
		return cli.Usagef("--timeout %s: want 0 (no limit) or a positive duration", f.timeout)
	}
	if f.poll <= 0 {
		return cli.Usagef("--poll %s: want a positive duration", f.poll)
	}
	for _, q := range f.queues {
		if err := checkQueueName(q); err != nil {
			return err
		}
	}
	var refs []queue.TaskRef
	if cmd.Flags().Changed("tasks") {
		if len(f.queues) > 0 {
			return cli.Usagef("--tasks and --queue cannot be used together")
		}
		var err error
		if refs, err = readTaskList(cmd, f.tasks); err != nil {
			return err
		}
	}
	e, err := g.load(cmd)
	if err != nil {
		return err
	}

	ctx := cmd.Context()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	if refs != nil {
		err = waitTasks(ctx, cmd, e, refs, f)
	} else {
		err = waitQueues(ctx, cmd, e, f)
	}
	if errors.Is(err, queue.ErrTimeout) {
		return fmt.Errorf("wait --timeout %s: %w", f.timeout, err)
	}
	return interrupted(cmd.Context(), err)
}

// readTaskList reads the --tasks file ('-': stdin).
func readTaskList(cmd *cobra.Command, name string) ([]queue.TaskRef, error) {
	r, err := openInput(cmd, "tasks", name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	refs, err := queue.ReadTaskList(r)
	if errors.Is(err, queue.ErrBadTaskList) {
		return nil, cli.Usagef("--tasks %s: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("--tasks %s: %w", name, err)
	}
	if refs == nil {
		refs = []queue.TaskRef{} // an empty list is done at once
	}
	return refs, nil
}

// waitQueues waits for the queues f names (every queue when none), saying
// on stderr which once it first looked, and prints them once they are done.
func waitQueues(ctx context.Context, cmd *cobra.Command, e env, f *waitFlags) error {
	inspector := asynq.NewInspector(e.redis)
	defer inspector.Close()
	watched, err := queue.Wait(ctx, inspector, f.queues, f.poll, func(watched []string) {
		what := queueNames(watched)
		switch {
		case len(f.queues) > 0:
		case len(watched) == 0:
			what = "every queue (there are none yet)"
		default:
			what = "every queue, now " + strings.Join(watched, ", ")
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "producer: waiting%s for %s\n", upTo(f.timeout), what)
	})
	if err != nil {
		return err
	}
	done := fmt.Sprintf("%d queues done: %s", len(watched), strings.Join(watched, ", "))
	switch len(watched) {
	case 0:
		done = "0 queues done: there are none"
	case 1:
		done = "1 queue done: " + watched[0]
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), done)
	return writeErr(err)
}

// queueNames is "queue Q" or "queues A, B" for names, sorted, without
// repeats.
func queueNames(names []string) string {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	if len(names) == 1 {
		return "queue " + names[0]
	}
	return "queues " + strings.Join(names, ", ")
}

// upTo is " up to D" for a --timeout D, "" for none.
func upTo(timeout time.Duration) string {
	if timeout <= 0 {
		return ""
	}
	return " up to " + timeout.String()
}

// waitTasks waits for refs, saying on stderr how many in which queues and
// showing progress on a terminal, and prints what became of them.
func waitTasks(ctx context.Context, cmd *cobra.Command, e env, refs []queue.TaskRef, f *waitFlags) error {
	rdb, err := e.redisClient()
	if err != nil {
		return err
	}
	defer rdb.Close()

	errOut := cmd.ErrOrStderr()
	queues := make([]string, len(refs))
	for i, r := range refs {
		queues[i] = r.Queue
	}
	line := progress.NewLine(errOut, progress.IsTerminal(errOut))
	counter := progress.NewCounter(line, "done", len(refs))
	prev := 0
	w, err := queue.WaitTasks(ctx, rdb, refs, f.poll, func(w queue.TaskWait) {
		if len(queues) > 0 { // the first look; queues is nil after it
			fmt.Fprintf(errOut, "producer: waiting%s for %s in %s\n", upTo(f.timeout), nTasks(len(refs)), queueNames(queues))
			queues = nil
		}
		counter.Add(w.Done() - prev)
		prev = w.Done()
	})
	if err != nil {
		line.Clear()
		return err
	}
	counter.Finish()
	out := fmt.Sprintf("%s done: %d completed, %d archived", nTasks(w.Total), w.Completed, w.Archived)
	if w.Gone > 0 {
		out += fmt.Sprintf(", %d gone while watched (completed without retention, or deleted)", w.Gone)
	}
	if n := len(w.Missing); n > 0 {
		m := w.Missing[0]
		out += fmt.Sprintf(", %d not found (deleted before wait looked, or never enqueued in this Redis; first: %s %s in %s)", n, m.ID, m.Symbol, m.Queue)
	}
	if _, err := fmt.Fprintln(cmd.OutOrStdout(), out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// redisClient opens a go-redis client on the same Redis as e's asynq
// clients, for reads the Inspector does not offer.
func (e env) redisClient() (redis.UniversalClient, error) {
	rdb, ok := e.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("redis: unexpected client type %T", rdb)
	}
	return rdb, nil
}

// nTasks is "1 task" or "N tasks".
func nTasks(n int) string {
	if n == 1 {
		return "1 task"
	}
	return fmt.Sprintf("%d tasks", n)
}
