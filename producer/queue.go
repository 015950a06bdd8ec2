package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/queue"
)

func queueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue COMMAND",
		Short: "List queues and delete one",
		Long: `queue lists the queues that exist in Redis and deletes one, as asynq's own
CLI does (asynq queue ls, asynq queue rm): a queue exists from its first
task on and stays, in stats, the web UI and the worker's metrics, until it
is deleted, even once empty. A mistyped --queue leaves such a queue behind.`,
		Example: `  producer queue list
  producer queue delete defualt --force`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("missing command: want queue list or queue delete (see producer queue --help)")
		},
	}
	cmd.AddCommand(queueListCmd(g), queueDeleteCmd(g))
	return cmd
}

func queueListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list [--json]",
		Aliases: []string{"ls"},
		Short:   "List the queues, with their tasks, pause and workers",
		Long: `list prints, per queue sorted by name, how many tasks it holds (in any
state, completed ones included: what delete without --force refuses),
whether it is paused, and how many running workers take tasks from it: 0
for a mistyped queue, whose tasks wait for ever.

With --json it prints one line: a JSON array of objects with the keys
queue, tasks, paused and workers ([] when there are no queues).`,
		Example: `  producer queue list
  producer queue list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listQueues(cmd, g, "queue list", asJSON, queue.Queues, printQueues)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	return cmd
}

func printQueues(out io.Writer, all []queue.QueueInfo) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tTASKS\tPAUSED\tWORKERS")
	for _, q := range all {
		paused := "no"
		if q.Paused {
			paused = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", q.Queue, q.Tasks, paused, q.Workers)
	}
	return writeErr(tw.Flush())
}

func queueDeleteCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "delete Q [--force]",
		Aliases: []string{"rm"},
		Short:   "Delete a queue, so it leaves stats, the web UI and the metrics",
		Long: `delete removes queue Q from Redis, so that it no longer shows in stats,
queue list, the web UI or the worker's metrics, and producer wait no longer
waits for it.

Without --force it deletes only a queue that holds no task at all: else it
exits 1 naming how many tasks it holds in which state. With --force it
deletes the queue's pending, scheduled, retry, archived and completed tasks
with it (asynq's Inspector.DeleteQueue with force, plus the completed tasks,
which asynq would leave behind). Not even --force deletes a queue while one
of its tasks runs (is active): cancel those (producer tasks cancel ID...) or
let them finish (producer wait --queue Q), then delete it. The completed
tasks go first: if a task starts just then, the queue stays, and the refusal
says that its completed tasks are deleted already.

A running worker configured to serve Q keeps asking it for tasks: a task
enqueued to Q later (by a producer, a schedule, or a long-running program
that enqueued to Q before, which asynq does not register again) brings Q
back. A pause (producer pause Q) stays, so that Q would come back paused;
producer unpause Q lifts it. The queue's all-time processed and failed
totals stay in Redis, as asynq keeps them, and so does a --unique lock held
by one of the deleted tasks, until it expires.

It prints one line, e.g. "deleted queue defualt and its 1 task (pending 1)".
A queue that does not exist exits 1, naming the queues that do.`,
		Example: `  producer queue delete defualt
  producer queue delete defualt --force
  producer queue rm old-batch --force`,
		Args: oneQueueArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, inspector, err := g.inspect(cmd)
			if err != nil {
				return err
			}
			defer inspector.Close()
			d, err := queue.DeleteQueue(cmd.Context(), inspector, args[0], force)
			var notEmpty *queue.NotEmptyError
			switch {
			case errors.As(err, &notEmpty) && notEmpty.Held.Active > 0:
				return fmt.Errorf("%w; cancel the running ones (producer tasks cancel ID...) or let them finish (producer wait --queue %s), then delete it", err, d.Queue)
			case errors.As(err, &notEmpty):
				return fmt.Errorf("%w; --force deletes the queue with its tasks", err)
			case err != nil:
				return interrupted(cmd.Context(), fmt.Errorf("queue delete %s: %w", args[0], err))
			}
			line := "deleted queue " + d.Queue
			if n := d.Held.Total(); n > 0 {
				line += " and its " + d.Held.String()
			}
			if d.Paused {
				line += "; it stays paused (producer unpause " + d.Queue + " lifts that)"
			}
			switch {
			case d.Workers == 1:
				line += "; a running worker still serves it, so a task enqueued to it brings it back"
			case d.Workers > 1:
				line += fmt.Sprintf("; %d running workers still serve it, so a task enqueued to it brings it back", d.Workers)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), line)
			return writeErr(err)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete the queue's tasks with it (not while one runs)")
	return cmd
}
