package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/cli"
)

// runSessions runs the producer's command tree in this process and returns
// what it printed and its exit code.
func runSessions(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := rootCmd()
	root.SetOut(&stdout)
	code := cli.Execute(t.Context(), root, append([]string{"sessions"}, args...), &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func TestSessionsText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "Thanksgiving week",
			args: []string{"XNYS", "--from", "2026-11-24", "--to", "2026-11-30"},
			want: []string{
				"2026-11-24\t2026-11-24T09:30:00-05:00\t2026-11-24T16:00:00-05:00",
				"2026-11-25\t2026-11-25T09:30:00-05:00\t2026-11-25T16:00:00-05:00",
				"2026-11-27\t2026-11-27T09:30:00-05:00\t2026-11-27T13:00:00-05:00",
				"2026-11-30\t2026-11-30T09:30:00-05:00\t2026-11-30T16:00:00-05:00",
			},
		},
		{
			name: "Christmas, lower-case code",
			args: []string{"xnas", "--from", "2026-12-23", "--to", "2026-12-28"},
			want: []string{
				"2026-12-23\t2026-12-23T09:30:00-05:00\t2026-12-23T16:00:00-05:00",
				"2026-12-24\t2026-12-24T09:30:00-05:00\t2026-12-24T13:00:00-05:00",
				"2026-12-28\t2026-12-28T09:30:00-05:00\t2026-12-28T16:00:00-05:00",
			},
		},
		{
			name: "daylight saving time starts on 2026-03-08",
			args: []string{"XNYS", "--from", "2026-03-06", "--to", "2026-03-09"},
			want: []string{
				"2026-03-06\t2026-03-06T09:30:00-05:00\t2026-03-06T16:00:00-05:00",
				"2026-03-09\t2026-03-09T09:30:00-04:00\t2026-03-09T16:00:00-04:00",
			},
		},
		{
			name: "Independence Day observed on Friday 2026-07-03",
			args: []string{"XNYS", "--from", "2026-07-02", "--to", "2026-07-06"},
			want: []string{
				"2026-07-02\t2026-07-02T09:30:00-04:00\t2026-07-02T16:00:00-04:00",
				"2026-07-06\t2026-07-06T09:30:00-04:00\t2026-07-06T16:00:00-04:00",
			},
		},
		{
			name: "one day, the first of the calendar's",
			args: []string{"XNYS", "--from", "2000-01-03", "--to", "2000-01-03"},
			want: []string{"2000-01-03\t2000-01-03T09:30:00-05:00\t2000-01-03T16:00:00-05:00"},
		},
		{
			name: "a weekend has none",
			args: []string{"XNYS", "--from", "2026-11-28", "--to", "2026-11-29"},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runSessions(t, tt.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
			}
			want := strings.Join(tt.want, "\n")
			if want != "" {
				want += "\n"
			}
			if r.stdout != want {
				t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
			}
		})
	}
}

func TestSessionsJSON(t *testing.T) {
	t.Parallel()
	r := runSessions(t, "XNYS", "--from", "2026-11-20", "--to", "2026-12-31", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 28 { // 30 weekdays less Thanksgiving and Christmas
		t.Fatalf("%d lines, want 28:\n%s", len(lines), r.stdout)
	}
	early := map[string]bool{}
	for _, line := range lines {
		var got sessionLine
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if got.Open != got.Date+"T09:30:00-05:00" {
			t.Errorf("line %q: open %q, want 09:30 on the date", line, got.Open)
		}
		switch got.Close {
		case got.Date + "T13:00:00-05:00":
			early[got.Date] = true
		case got.Date + "T16:00:00-05:00":
		default:
			t.Errorf("line %q: close %q, want 13:00 or 16:00 on the date", line, got.Close)
		}
	}
	if len(early) != 2 || !early["2026-11-27"] || !early["2026-12-24"] {
		t.Errorf("early closes on %v, want 2026-11-27 and 2026-12-24", early)
	}
	if lines[0] != `{"date":"2026-11-20","open":"2026-11-20T09:30:00-05:00","close":"2026-11-20T16:00:00-05:00"}` {
		t.Errorf("first line %q", lines[0])
	}
}

func TestSessionsUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no exchange", []string{"--from", "2026-01-02", "--to", "2026-01-05"}, "want one EXCHANGE"},
		{"two exchanges", []string{"XNYS", "XNAS", "--from", "2026-01-02", "--to", "2026-01-05"}, "got 2 arguments"},
		{"unknown exchange", []string{"XLON", "--from", "2026-01-02", "--to", "2026-01-05"}, `unknown exchange "XLON"`},
		{"missing from", []string{"XNYS", "--to", "2026-01-05"}, "--from: missing"},
		{"missing to", []string{"XNYS", "--from", "2026-01-02"}, "--to: missing"},
		{"no such day", []string{"XNYS", "--from", "2026-02-29", "--to", "2026-03-05"}, `--from "2026-02-29"`},
		{"not a date", []string{"XNYS", "--from", "2026-01-02", "--to", "tomorrow"}, `--to "tomorrow"`},
		{"a time, not a date", []string{"XNYS", "--from", "2026-01-02T09:30:00Z", "--to", "2026-01-05"}, "--from"},
		{"from after to", []string{"XNYS", "--from", "2026-01-06", "--to", "2026-01-05"}, "--from 2026-01-06 is after --to 2026-01-05"},
		{"before 2000", []string{"XNYS", "--from", "1999-12-31", "--to", "2000-01-05"}, "--from 1999-12-31: date outside the calendar's years 2000 to 2099"},
		{"after 2099", []string{"XNAS", "--from", "2099-12-01", "--to", "2100-01-01"}, "--to 2100-01-01"},
		{"unknown flag", []string{"XNYS", "--from", "2026-01-02", "--to", "2026-01-05", "--csv"}, "--csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runSessions(t, tt.args...)
			if r.code != 2 || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing printed", r.code, r.stdout)
			}
			wantStderrLine(t, r, tt.want)
		})
	}
}

func TestSessionsNeedsNoRedis(t *testing.T) {
	t.Parallel()
	// The built binary with a REDIS_URL that every other command refuses.
	r := run(t, "redis://127.0.0.1:6379/notanumber", "", "sessions", "XNYS", "--from", "2026-11-27", "--to", "2026-11-27")
	if r.code != 0 || r.stdout != "2026-11-27\t2026-11-27T09:30:00-05:00\t2026-11-27T13:00:00-05:00\n" || r.stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the early close of 2026-11-27", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"sessions", "--help"}, {"help", "sessions"}} {
		r := run(t, "redis://127.0.0.1:1/1", "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "producer sessions XNYS --from 2026-11-20 --to 2026-12-31") {
			t.Errorf("%q: exit %d, stdout %q; want 0, usage and an example", args, r.code, r.stdout)
		}
	}
}
