package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestExecuteExitCodes(t *testing.T) {
	t.Parallel()
	newCmd := func(runErr error) *cobra.Command {
		root := &cobra.Command{Use: "prog", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return runErr }}
		root.Flags().Int("n", 0, "a number")
		root.AddCommand(&cobra.Command{Use: "sub", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return runErr }})
		return root
	}
	for _, tc := range []struct {
		name   string
		runErr error
		args   []string
		code   int
		stderr string
	}{
		{"ok", nil, nil, ExitOK, ""},
		{"help", nil, []string{"--help"}, ExitOK, ""},
		{"runtime failure", errors.New("redis: connection refused\nretrying"), nil, ExitFailure, "prog: redis: connection refused retrying\n"},
		{"runtime failure mentioning invalid argument", errors.New("write: invalid argument"), nil, ExitFailure, "prog: write: invalid argument\n"},
		{"usage error", Usagef("bad symbol %q", "X$"), nil, ExitUsage, "prog: bad symbol \"X$\"\n"},
		{"unknown flag", nil, []string{"--nope"}, ExitUsage, "prog: unknown flag: --nope\n"},
		{"bad flag value", nil, []string{"--n", "x"}, ExitUsage, ""},
		{"unknown command", nil, []string{"nosuch"}, ExitUsage, ""},
		{"wrong arg count", nil, []string{"sub"}, ExitUsage, ""},
	} {
		var stderr bytes.Buffer
		code := Execute(context.Background(), newCmd(tc.runErr), tc.args, &stderr)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tc.name, code, tc.code, stderr.String())
		}
		if tc.stderr != "" && stderr.String() != tc.stderr {
			t.Errorf("%s: stderr %q, want %q", tc.name, stderr.String(), tc.stderr)
		}
		if n := strings.Count(stderr.String(), "\n"); code != ExitOK && n != 1 {
			t.Errorf("%s: %d stderr lines, want 1: %q", tc.name, n, stderr.String())
		}
	}
}
