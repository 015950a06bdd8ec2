package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/queue"
)

func statsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats [--json]",
		Short: "Show how many tasks each queue holds in each state",
		Long: `stats prints, per queue sorted by name, the tasks pending, active, scheduled,
waiting to retry, archived and completed (kept for their retention), and
the all-time totals processed and failed.

With --json it prints one line: a JSON array of objects with the keys queue,
pending, active, scheduled, retry, archived, completed, processed and failed
([] when there are no queues).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listQueues(cmd, g, "stats", asJSON, queue.Stats, printStatsTable)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	return cmd
}

// listQueues is a per-queue listing (stats, queue list): it reads every
// queue with read and prints it with table, or with --json as one JSON
// array ([] when there are no queues). what names it in errors.
func listQueues[T any](cmd *cobra.Command, g *globals, what string, asJSON bool,
	read func(context.Context, *asynq.Inspector) ([]T, error), table func(io.Writer, []T) error) error {
	_, inspector, err := g.inspect(cmd)
	if err != nil {
		return err
	}
	defer inspector.Close()
	all, err := read(cmd.Context(), inspector)
	if err != nil {
		return interrupted(cmd.Context(), fmt.Errorf("%s: %w", what, err))
	}
	if !asJSON {
		return table(cmd.OutOrStdout(), all)
	}
	if all == nil {
		all = []T{}
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	if err := json.NewEncoder(w).Encode(all); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return writeErr(w.Flush())
}

func printStatsTable(out io.Writer, all []queue.QueueStats) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tCOMPLETED\tPROCESSED\tFAILED")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n",
			s.Queue, s.Pending, s.Active, s.Scheduled, s.Retry, s.Archived, s.Completed, s.Processed, s.Failed)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
