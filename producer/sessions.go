package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tickerq/tickerq/internal/calendar"
	"github.com/tickerq/tickerq/internal/cli"
)

// sessionsCmd takes the globals like every subcommand but uses none of them:
// the market calendar is built in, so it reads neither Redis nor REDIS_URL.
func sessionsCmd(_ *globals) *cobra.Command {
	var from, to string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions EXCHANGE --from YYYY-MM-DD --to YYYY-MM-DD [--json]",
		Short: "List an exchange's trading days and their hours",
		Long: fmt.Sprintf(`sessions prints each trading day of EXCHANGE from --from to --to, both
included, one per line: DATE<TAB>OPEN<TAB>CLOSE, OPEN and CLOSE in RFC3339
with the exchange's UTC offset on that day. With --json it prints one object
per line: {"date":…,"open":…,"close":…}.

EXCHANGE is XNYS (New York Stock Exchange) or XNAS (Nasdaq): regular
sessions 09:30-16:00 America/New_York, without the full-day holidays, with
the 13:00 early closes, and without the one-off closures since 2000. Dates
run from %d-01-01 to %d-12-31. It needs no Redis.`, calendar.FirstYear, calendar.LastYear),
		Example: `  producer sessions XNYS --from 2026-11-20 --to 2026-12-31
  producer sessions xnas --from 2027-01-01 --to 2027-12-31 --json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("sessions: want one EXCHANGE (XNYS or XNAS), got %d arguments", len(args))
			}
			e, err := calendar.Lookup(args[0])
			if err != nil {
				return cli.Usage(err)
			}
			first, err := sessionDate(e, "--from", from)
			if err != nil {
				return err
			}
			last, err := sessionDate(e, "--to", to)
			if err != nil {
				return err
			}
			if first.After(last) {
				return cli.Usagef("--from %s is after --to %s", from, to)
			}
			sessions, err := e.Sessions(first, last)
			if err != nil {
				return fmt.Errorf("sessions: %w", err)
			}
			return printSessions(cmd.OutOrStdout(), sessions, asJSON)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD (required)")
	cmd.Flags().StringVar(&to, "to", "", "last day, YYYY-MM-DD (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

// sessionDate parses the value of a date flag as midnight in the
// exchange's location; every problem is a usage error naming the flag.
func sessionDate(e *calendar.Exchange, flag, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, cli.Usagef("%s: missing; want a date YYYY-MM-DD", flag)
	}
	d, err := time.ParseInLocation(time.DateOnly, value, e.Location())
	if err != nil {
		return time.Time{}, cli.Usagef("%s %q: want a date YYYY-MM-DD", flag, value)
	}
	if _, _, err := e.SessionOn(d.Date()); err != nil {
		if errors.Is(err, calendar.ErrOutOfRange) {
			return time.Time{}, cli.Usagef("%s %s: %w", flag, value, calendar.ErrOutOfRange)
		}
		return time.Time{}, fmt.Errorf("%s %s: %w", flag, value, err)
	}
	return d, nil
}

// sessionLine is one line of sessions --json.
type sessionLine struct {
	Date  string `json:"date"`
	Open  string `json:"open"`
	Close string `json:"close"`
}

func printSessions(out io.Writer, sessions []calendar.Session, asJSON bool) error {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	for _, s := range sessions {
		line := sessionLine{
			Date:  s.Date.Format(time.DateOnly),
			Open:  s.Open.Format(time.RFC3339),
			Close: s.Close.Format(time.RFC3339),
		}
		if asJSON {
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", line.Date, line.Open, line.Close)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
