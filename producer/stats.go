package main

import (
	"bufio"
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
			e, err := g.load(cmd)
			if err != nil {
				return err
			}
			inspector := asynq.NewInspector(e.redis)
			defer inspector.Close()
			all, err := queue.Stats(cmd.Context(), inspector)
			if err != nil {
				return interrupted(cmd.Context(), fmt.Errorf("stats: %w", err))
			}
			if asJSON {
				return printStatsJSON(cmd.OutOrStdout(), all)
			}
			return printStatsTable(cmd.OutOrStdout(), all)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	return cmd
}

func printStatsJSON(out io.Writer, all []queue.QueueStats) error {
	if all == nil {
		all = []queue.QueueStats{}
	}
	w := bufio.NewWriter(out)
	if err := json.NewEncoder(w).Encode(all); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
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
