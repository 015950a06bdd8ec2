package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/cli"
	"github.com/tickerq/tickerq/internal/queue"
)

type waitFlags struct {
	timeout time.Duration
	queues  []string
	poll    time.Duration
}

func waitCmd(g *globals) *cobra.Command {
	var f waitFlags
	cmd := &cobra.Command{
		Use:   "wait [--timeout DURATION] [--queue Q]...",
		Short: "Wait until no task is pending, active, scheduled or waiting to retry",
		Long: `wait polls the queues until none holds a task that is pending, active,
scheduled or waiting to retry, then exits 0. Archived and completed tasks do
not count. With --queue it watches only the named queues (a queue that does
not exist yet counts as empty); without, every queue.

On --timeout it exits 1, naming what is still outstanding. 0 means no limit.`,
		Example: `  producer enqueue --file symbols.txt && producer wait --timeout 10m
  producer wait --queue critical --queue default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWait(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.timeout, "timeout", 0, "give up after this long and exit 1; 0 waits for ever")
	fl.StringArrayVar(&f.queues, "queue", nil, "queue to watch; repeat for more (default every queue)")
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
	inspector := asynq.NewInspector(e.redis)
	defer inspector.Close()
	err = queue.Wait(ctx, inspector, f.queues, f.poll)
	if errors.Is(err, queue.ErrTimeout) {
		return fmt.Errorf("wait --timeout %s: %w", f.timeout, err)
	}
	return interrupted(cmd.Context(), err)
}
