package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/queue"
)

// defaultListLimit is how many tasks `tasks list` prints without --limit.
const defaultListLimit = 100

func tasksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tasks COMMAND",
		Short: "List, retry, delete and cancel tasks",
		Long: `tasks works on single tasks through asynq's Inspector: list the tasks of a
queue in one state, move archived tasks back to pending, delete tasks,
cancel running ones.

Each command prints one line per task it acted on and a count, or with
--json one object per line. A task id that is not found, or whose task is
not in the state the command needs, is named on stderr; the others are still
done and the command exits 1. Bad usage (no ids, ids with --all, an unknown
state) exits 2. A queue that does not exist exits 1, naming the queues that do.`,
		Example: `  producer tasks list --queue default --state archived
  producer tasks retry --queue default --all-archived
  producer tasks delete --queue low --state scheduled ID
  producer tasks cancel ID`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("missing command: want tasks list, retry, delete or cancel (see producer tasks --help)")
		},
	}
	cmd.AddCommand(tasksListCmd(g), tasksRetryCmd(g), tasksDeleteCmd(g), tasksCancelCmd(g))
	return cmd
}

type listFlags struct {
	queue string
	state string
	limit int
	json  bool
}

func tasksListCmd(g *globals) *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list --queue Q --state S [--limit N] [--json]",
		Short: "List the tasks of a queue in one state",
		Long: `list prints the tasks of queue Q in state S (` + strings.Join(queue.States, ", ") + `),
one per line: ID<TAB>SYMBOL<TAB>STATE<TAB>DETAIL. DETAIL is the last error
for retry and archived, the result for completed and the next run (RFC 3339)
for scheduled; empty otherwise. Tabs and line breaks inside a field become
spaces.

With --json, one object per line with the keys id, symbol, queue, state,
error, last_failed_at, result (the handler's JSON result as it is),
next_process_at, completed_at, retried and max_retry; keys without a value
are left out.

It prints at most --limit tasks (0: all), reading the queue a page at a
time; when there are more, a note on stderr says how many.`,
		Example: `  producer tasks list --queue default --state archived
  producer tasks list --queue default --state completed --limit 10 --json
  producer tasks list --queue low --state scheduled --limit 0 | wc -l`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.queue, "queue", queue.DefaultQueue, "queue to list")
	fl.StringVar(&f.state, "state", "", "state to list: "+strings.Join(queue.States, ", ")+" (required)")
	fl.IntVar(&f.limit, "limit", defaultListLimit, "print at most this many tasks; 0 prints all")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per task")
	return cmd
}

func runList(cmd *cobra.Command, g *globals, f *listFlags) error {
	if err := checkQueueName(f.queue); err != nil {
		return err
	}
	state, err := parseStateFlag(cmd, f.state, queue.States)
	if err != nil {
		return err
	}
	if f.limit < 0 {
		return cli.Usagef("--limit %d: want 0 (all) or more", f.limit)
	}
	_, inspector, err := g.inspect(cmd)
	if err != nil {
		return err
	}
	defer inspector.Close()

	ctx := cmd.Context()
	w := bufio.NewWriterSize(cmd.OutOrStdout(), 64*1024)
	enc := json.NewEncoder(w)
	printed := 0
	err = queue.List(ctx, inspector, f.queue, state, f.limit, func(batch []queue.Task) error {
		for _, t := range batch {
			if f.json {
				if err := enc.Encode(t); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
			} else {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", field(t.ID), field(t.Symbol), t.State, t.Detail())
			}
		}
		printed += len(batch)
		return nil
	})
	if ferr := w.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	if err != nil {
		return interrupted(ctx, fmt.Errorf("tasks list: %w", err))
	}
	if f.limit > 0 && printed == f.limit {
		if total, err := stateCount(inspector, f.queue, state); err == nil && total > printed {
			fmt.Fprintf(cmd.ErrOrStderr(), "producer: showed %d of %d %s tasks in queue %s; --limit 0 shows all\n", printed, total, state, f.queue)
		}
	}
	return nil
}

// stateCount is how many tasks queue holds in state.
func stateCount(inspector *asynq.Inspector, name string, state asynq.TaskState) (int, error) {
	info, err := inspector.GetQueueInfo(name)
	if err != nil {
		return 0, err
	}
	return map[asynq.TaskState]int{
		asynq.TaskStatePending:   info.Pending,
		asynq.TaskStateActive:    info.Active,
		asynq.TaskStateScheduled: info.Scheduled,
		asynq.TaskStateRetry:     info.Retry,
		asynq.TaskStateArchived:  info.Archived,
		asynq.TaskStateCompleted: info.Completed,
	}[state], nil
}

// field keeps a value to one tab-separated field of one line.
func field(s string) string { return strings.Join(strings.Fields(s), " ") }

// parseStateFlag checks the required --state, one of allowed.
func parseStateFlag(cmd *cobra.Command, raw string, allowed []string) (asynq.TaskState, error) {
	if !cmd.Flags().Changed("state") {
		return 0, cli.Usagef("--state is required: one of %s", strings.Join(allowed, ", "))
	}
	s, err := queue.ParseState(raw, allowed)
	if err != nil {
		return 0, cli.Usagef("--state: %w", err)
	}
	return s, nil
}

type opFlags struct {
	queue string
	state string
	all   bool
	json  bool
}

func tasksRetryCmd(g *globals) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "retry [--queue Q] (ID... | --all-archived) [--json]",
		Short: "Move archived tasks back to pending",
		Long: `retry moves the named tasks of queue Q back to pending, so that a worker runs
them again with a fresh retry count; each must be archived (failed for good)
or waiting to retry. With --all-archived it moves every archived task of the
queue, in one step, and prints how many.

It prints ID<TAB>SYMBOL<TAB>QUEUE<TAB>retried (was STATE) per task and a
count, or with --json one object per task: id, symbol, queue, state (before),
action, ok and error; with --all-archived one object: queue, state, retried.`,
		Example: `  producer tasks retry --queue default 3f1c9a2e-... 7b0d4e11-...
  producer tasks retry --queue default --all-archived
  producer tasks list --state archived --limit 0 | cut -f1 | xargs producer tasks retry`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOp(cmd, g, &f, args, "all-archived", func(ctx context.Context, in *asynq.Inspector) ([]queue.Outcome, error) {
				return queue.Retry(ctx, in, f.queue, args)
			}, func(ctx context.Context, in *asynq.Inspector) (int, error) {
				return queue.RetryAllArchived(ctx, in, f.queue)
			}, opText{verb: "retried", not: "not retried", all: "archived"})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.queue, "queue", queue.DefaultQueue, "queue of the tasks")
	fl.BoolVar(&f.all, "all-archived", false, "retry every archived task of the queue")
	fl.BoolVar(&f.json, "json", false, "print JSON objects, one a line")
	return cmd
}

func tasksDeleteCmd(g *globals) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "delete [--queue Q] --state S (ID... | --all) [--json]",
		Short: "Delete tasks of a queue in one state",
		Long: `delete deletes the named tasks of queue Q; each must be in state S (` + strings.Join(queue.DeletableStates, ", ") + `),
so that an id from an old listing never deletes a task that has moved on.
With --all it deletes every task of the queue in state S and prints how
many. Running (active) tasks cannot be deleted: cancel them with producer
tasks cancel.

It prints ID<TAB>SYMBOL<TAB>QUEUE<TAB>deleted (was STATE) per task and a
count, or with --json one object per task: id, symbol, queue, state, action,
ok and error; with --all one object: queue, state, deleted.`,
		Example: `  producer tasks delete --queue default --state archived 3f1c9a2e-...
  producer tasks delete --queue low --state scheduled --all --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.state == asynq.TaskStateActive.String() {
				return cli.Usagef("--state active: running tasks cannot be deleted; cancel them instead: producer tasks cancel ID...")
			}
			state, err := parseStateFlag(cmd, f.state, queue.DeletableStates)
			if err != nil {
				return err
			}
			return runOp(cmd, g, &f, args, "all", func(ctx context.Context, in *asynq.Inspector) ([]queue.Outcome, error) {
				return queue.Delete(ctx, in, f.queue, state, args)
			}, func(ctx context.Context, in *asynq.Inspector) (int, error) {
				return queue.DeleteAll(ctx, in, f.queue, state)
			}, opText{verb: "deleted", not: "not deleted", all: state.String()})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.queue, "queue", queue.DefaultQueue, "queue of the tasks")
	fl.StringVar(&f.state, "state", "", "state the tasks are in: "+strings.Join(queue.DeletableStates, ", ")+" (required)")
	fl.BoolVar(&f.all, "all", false, "delete every task of the queue in --state")
	fl.BoolVar(&f.json, "json", false, "print JSON objects, one a line")
	return cmd
}

func tasksCancelCmd(g *globals) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "cancel ID... [--json]",
		Short: "Cancel running (active) tasks",
		Long: `cancel asks the worker running each named task to stop it: the task's
context is cancelled, in whatever queue it runs. Each must be active; a task
that is pending, scheduled or in another state is named on stderr with its
state and queue and is left alone (delete or archive it instead).

Cancelling is best effort and takes effect on the worker a moment later.
A cancelled task counts as failed and is retried under its retry policy;
delete it afterwards if it must not run again.

It prints ID<TAB>SYMBOL<TAB>QUEUE<TAB>cancel sent per task and a count, or
with --json one object per task: id, symbol, queue, state, action, ok and
error.`,
		Example: `  producer tasks cancel 3f1c9a2e-...
  producer tasks list --state active | cut -f1 | xargs producer tasks cancel`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOp(cmd, g, &f, args, "", func(ctx context.Context, in *asynq.Inspector) ([]queue.Outcome, error) {
				return queue.Cancel(ctx, in, args)
			}, nil, opText{verb: "cancel sent", not: "not cancelled"})
		},
	}
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object per task")
	return cmd
}

// opText is how an operation names itself in its output.
type opText struct {
	verb string // "retried", "deleted", "cancel sent"
	not  string // "not retried", ...
	all  string // the state the --all form acts on
}

// runOp checks the ids (or the --all flag named allFlag) and runs byID or
// all, printing what was done.
func runOp(cmd *cobra.Command, g *globals, f *opFlags, ids []string, allFlag string,
	byID func(context.Context, *asynq.Inspector) ([]queue.Outcome, error),
	all func(context.Context, *asynq.Inspector) (int, error), text opText) error {
	if cmd.Flags().Lookup("queue") != nil {
		if err := checkQueueName(f.queue); err != nil {
			return err
		}
	}
	switch {
	case f.all && len(ids) > 0:
		return cli.Usagef("task ids and --%s cannot be used together", allFlag)
	case !f.all && len(ids) == 0 && allFlag != "":
		return cli.Usagef("no task ids given: pass them as arguments, or --%s", allFlag)
	case !f.all && len(ids) == 0:
		return cli.Usagef("no task ids given")
	}
	for _, id := range ids {
		if strings.TrimSpace(id) == "" || strings.ContainsAny(id, " \t\r\n") {
			return cli.Usagef("task id %q: want a non-empty id without whitespace", id)
		}
	}
	_, inspector, err := g.inspect(cmd)
	if err != nil {
		return err
	}
	defer inspector.Close()
	ctx := cmd.Context()
	out := cmd.OutOrStdout()

	if f.all {
		n, err := all(ctx, inspector)
		if err != nil {
			return interrupted(ctx, err)
		}
		if f.json {
			return writeJSON(out, map[string]any{"queue": f.queue, "state": text.all, text.verb: n})
		}
		_, err = fmt.Fprintf(out, "%s %d %s tasks in queue %s\n", text.verb, n, text.all, f.queue)
		return writeErr(err)
	}

	outs, err := byID(ctx, inspector)
	if err != nil {
		return interrupted(ctx, err)
	}
	return printOutcomes(out, cmd.ErrOrStderr(), outs, text, f.json)
}

// opLine is one line of an operation's --json output.
type opLine struct {
	ID     string `json:"id"`
	Symbol string `json:"symbol,omitempty"`
	Queue  string `json:"queue,omitempty"`
	State  string `json:"state,omitempty"` // before the operation
	Action string `json:"action"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// printOutcomes prints a line per task done to out and a line per task not
// done to errOut, then the count; it returns an error if any task was not
// done.
func printOutcomes(out, errOut io.Writer, outs []queue.Outcome, text opText, asJSON bool) error {
	verb := text.verb
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	var failed []string
	for _, o := range outs {
		t := o.Task
		if asJSON {
			l := opLine{ID: o.ID, Symbol: t.Symbol, Queue: t.Queue, State: t.State, Action: verb, OK: o.Err == nil}
			if o.Err != nil {
				l.Error = o.Err.Error()
			}
			if err := enc.Encode(l); err != nil {
				return writeErr(err)
			}
		} else if o.Err == nil {
			was := ""
			if verb != "cancel sent" {
				was = " (was " + t.State + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s%s\n", field(o.ID), field(t.Symbol), t.Queue, verb, was)
		}
		if o.Err != nil {
			if failed = append(failed, o.ID); len(failed) <= maxFailureLines {
				fmt.Fprintf(errOut, "producer: %s\n", field(o.Err.Error()))
			}
		}
	}
	if !asJSON {
		fmt.Fprintf(w, "%s %d of %d tasks\n", verb, len(outs)-len(failed), len(outs))
	}
	if err := w.Flush(); err != nil {
		return writeErr(err)
	}
	if len(failed) > 0 {
		named := failed[:min(len(failed), maxFailureLines)]
		more := ""
		if len(failed) > len(named) {
			more = fmt.Sprintf(" and %d more", len(failed)-len(named))
		}
		return fmt.Errorf("%d of %d tasks %s: %s%s", len(failed), len(outs), text.not, strings.Join(named, ", "), more)
	}
	return nil
}

func writeJSON(out io.Writer, v any) error {
	return writeErr(json.NewEncoder(out).Encode(v))
}

func writeErr(err error) error {
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
