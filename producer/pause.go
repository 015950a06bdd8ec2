package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/queue"
)

func pauseCmd(g *globals) *cobra.Command {
	return pauseCommand(g, true)
}

func unpauseCmd(g *globals) *cobra.Command {
	return pauseCommand(g, false)
}

// pauseCommand builds `pause Q` (pause true) or `unpause Q`.
func pauseCommand(g *globals, pause bool) *cobra.Command {
	var asJSON bool
	name, short, long, example := "pause", "Stop workers from taking tasks from a queue",
		`pause makes every worker stop taking new tasks from queue Q; tasks already
running finish, and tasks can still be enqueued to it. The pause lasts until
producer unpause Q. Pausing a paused queue changes nothing; a queue that holds
no tasks yet can be paused, so that it starts paused.`,
		`  producer pause low
  producer pause --json critical`
	if !pause {
		name, short, long, example = "unpause", "Let workers take tasks from a paused queue again",
			`unpause lets workers take tasks from queue Q again after producer pause Q.
Unpausing a queue that is not paused changes nothing.`,
			`  producer unpause low`
	}
	cmd := &cobra.Command{
		Use:   name + " Q [--json]",
		Short: short,
		Long: long + `

It prints one line, e.g. "` + name + `d queue low", or with --json one object:
{"queue":…,"paused":…,"changed":…} (changed false when it already was so).`,
		Example: example,
		Args:    oneQueueArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, inspector, err := g.inspect(cmd)
			if err != nil {
				return err
			}
			defer inspector.Close()
			rdb, err := e.redisClient()
			if err != nil {
				return err
			}
			defer rdb.Close()
			op := queue.Pause
			if !pause {
				op = queue.Unpause
			}
			r, err := op(cmd.Context(), inspector, rdb, args[0])
			if err != nil {
				return interrupted(cmd.Context(), fmt.Errorf("%s %s: %w", name, args[0], err))
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Queue   string `json:"queue"`
					Paused  bool   `json:"paused"`
					Changed bool   `json:"changed"`
				}{r.Queue, pause, r.Changed})
			}
			var line string
			switch {
			case !r.Changed && pause:
				line = "queue " + r.Queue + " was already paused"
			case !r.Changed:
				line = "queue " + r.Queue + " was not paused"
			case pause && !r.Exists:
				line = "paused queue " + r.Queue + " (it holds no tasks yet)"
			default:
				line = name + "d queue " + r.Queue
			}
			_, err = fmt.Fprintln(out, line)
			return writeErr(err)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
