// Package cli holds what tickerq's three programs share on the command line:
// the exit-code convention and environment lookups.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every program.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure
	ExitUsage   = 2 // bad usage or invalid input
)

// UsageError marks bad usage or invalid input: the program exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage wraps err as a UsageError.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Usagef is Usage(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// Execute runs cmd with args under ctx and returns the process exit code.
// Errors are printed to stderr as one line prefixed with the program name;
// flag errors, unknown commands and UsageErrors give ExitUsage.
func Execute(ctx context.Context, cmd *cobra.Command, args []string, stderr io.Writer) int {
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	c, err := cmd.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %s\n", cmd.Name(), oneLine(err.Error()))
	var usage *UsageError
	if errors.As(err, &usage) || isCobraUsageError(c, err) {
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognises cobra's own usage errors, which it returns as
// plain errors: an unknown subcommand, or arguments its Args validator
// refuses (checked by running the validator again, not by the message).
func isCobraUsageError(c *cobra.Command, err error) bool {
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return true
	}
	return c != nil && c.Args != nil && c.Args(c, c.Flags().Args()) != nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Env returns the environment variable name, or def when it is unset or empty.
func Env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
