package schedule

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickerq/tickerq/tasks"
)

// fakeMarkets knows XNYS and XNAS as fakeMarket with no holidays.
func fakeMarkets(code string) (Market, error) {
	switch code {
	case "XNYS", "XNAS":
		return newFakeMarket(nil, nil), nil
	}
	return nil, errors.New("unknown exchange " + code)
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte("# comment\nmsft\n\nGOOG\nAAPL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(`
timezone: America/New_York
misfire_grace: 5m
schedules:
  - name: us-minute
    cron: "* * * * *"
    market: XNYS
    symbols: [AAPL, brk.b]
    file: list.txt
    queue: critical
    max_retry: 3
    timeout: 20s
    retention: 1h
    timezone: Europe/London
    misfire_grace: 2h
  - name: every-30s
    every: 30s
    symbols: [GOOG]
`), dir, fakeMarkets)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(cfg.Entries))
	}
	a, b := cfg.Entries[0], cfg.Entries[1]
	if got, want := strings.Join(a.Symbols, ","), "AAPL,BRK.B,MSFT,GOOG"; got != want {
		t.Errorf("symbols = %s, want %s (normalized, file after list, repeats dropped)", got, want)
	}
	if a.Queue != "critical" || a.MaxRetry != 3 || a.Timeout != 20*time.Second || a.Retention != time.Hour ||
		a.Location.String() != "Europe/London" || a.MarketCode != "XNYS" || a.Market == nil || a.Cron != "* * * * *" ||
		a.MisfireGrace != 2*time.Hour {
		t.Errorf("entry a = %+v", a)
	}
	if b.Every != 30*time.Second || b.Queue != "default" || b.Retention != DefaultRetention ||
		b.Location.String() != "America/New_York" || b.MaxRetry != tasks.DefaultMaxRetry || b.Timeout != 0 || b.MisfireGrace != 5*time.Minute {
		t.Errorf("entry b = %+v", b)
	}
	if want := filepath.Join(dir, "list.txt"); len(cfg.Files) != 1 || cfg.Files[0] != want {
		t.Errorf("Files = %v, want [%s]", cfg.Files, want)
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.txt"), []byte("GOOG\nnot a symbol\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	entry := func(lines string) string {
		return "schedules:\n  - name: us-minute\n" + lines
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "the file is empty"},
		{"no entries", "timezone: UTC\n", "schedules: want at least one entry"},
		{"unknown top field", "zone: UTC\nschedules: []\n", "invalid schedule: zone: unknown field (line 1)"},
		{"unknown entry field", entry("    every: 1s\n    symbols: [A]\n    retries: 3\n"), `invalid schedule: schedule "us-minute": retries: unknown field (line 5)`},
		{"unknown field before name", "schedules:\n  - bogus: 1\n    name: e1\n    every: 1s\n", `schedule "e1": bogus: unknown field (line 2)`},
		{"unknown field no name", "schedules:\n  - bogus: 1\n", `schedule #1: bogus: unknown field (line 2)`},
		{"repeated field", entry("    every: 1s\n    every: 2s\n"), `schedule "us-minute": every: repeated field (line 4)`},
		{"every a list", entry("    every: [1]\n    symbols: [A]\n"), `schedule "us-minute": every: want a single value, not a list or mapping (line 3)`},
		{"cron a mapping", entry("    cron: {a: 1}\n    symbols: [A]\n"), `schedule "us-minute": cron: want a single value, not a list or mapping (line 3)`},
		{"symbols a string", entry("    every: 1s\n    symbols: AAPL\n"), `schedule "us-minute": symbols: want a list of symbols (line 4)`},
		{"symbols nested", entry("    every: 1s\n    symbols: [[A]]\n"), `schedule "us-minute": symbols: want a single value, not a list or mapping (line 4)`},
		{"max_retry text", entry("    every: 1s\n    symbols: [A]\n    max_retry: lots\n"), `schedule "us-minute": max_retry: want a whole number (line 5)`},
		{"max_retry fraction", entry("    every: 1s\n    symbols: [A]\n    max_retry: 2.5\n"), `schedule "us-minute": max_retry: want a whole number (line 5)`},
		{"schedules a mapping", "schedules: {a: 1}\n", "invalid schedule: schedules: want a list of entries (line 1)"},
		{"entry a string", "schedules:\n  - hello\n", "invalid schedule: schedule #1: want a mapping of fields (line 2)"},
		{"file a list", "- a\n", "invalid schedule: want a mapping with a schedules list (line 1)"},
		{"timezone a list", "timezone: [UTC]\n", "invalid schedule: timezone: want a single value, not a list or mapping (line 1)"},
		{"market cron never in session", entry("    cron: \"0 17 * * *\"\n    market: XNYS\n    timezone: America/New_York\n    symbols: [A]\n"), `schedule "us-minute": cron: "0 17 * * *" never falls inside an XNYS session`},
		{"market every never in session", entry("    every: 24h\n    market: XNAS\n    symbols: [A]\n"), `schedule "us-minute": every: 24h0m0s never falls inside an XNAS session`},
		{"bad file timezone", "timezone: Mars/Base\n" + entry("    every: 1s\n    symbols: [A]\n"), "timezone: unknown time zone Mars/Base"},
		{"bad name", "schedules:\n  - name: US_minute\n    every: 1s\n    symbols: [A]\n", `schedule "US_minute": name "US_minute"`},
		{"no name", "schedules:\n  - every: 1s\n    symbols: [A]\n", `schedule #1: name ""`},
		{"duplicate name", entry("    every: 1s\n    symbols: [A]\n  - name: us-minute\n    every: 2s\n    symbols: [B]\n"), `schedule "us-minute": name: used by an earlier entry`},
		{"cron and every", entry("    cron: \"* * * * *\"\n    every: 1s\n    symbols: [A]\n"), `schedule "us-minute": cron and every: want exactly one`},
		{"neither", entry("    symbols: [A]\n"), `schedule "us-minute": cron or every: want exactly one`},
		{"six-field cron", entry("    cron: \"0 * * * * *\"\n    symbols: [A]\n"), `schedule "us-minute": cron: expected exactly 5 fields`},
		{"bad cron", entry("    cron: \"61 * * * *\"\n    symbols: [A]\n"), `schedule "us-minute": cron: `},
		{"never fires", entry("    cron: \"0 0 30 2 *\"\n    symbols: [A]\n"), `schedule "us-minute": cron: "0 0 30 2 *" never fires`},
		{"every no unit", entry("    every: 30\n    symbols: [A]\n"), `schedule "us-minute": every: time: missing unit`},
		{"every too short", entry("    every: 500ms\n    symbols: [A]\n"), `schedule "us-minute": every: 500ms: want at least 1s`},
		{"unknown market", entry("    every: 1s\n    market: XLON\n    symbols: [A]\n"), `schedule "us-minute": market: unknown exchange XLON`},
		{"no symbols", entry("    every: 1s\n"), `schedule "us-minute": symbols: want at least one`},
		{"bad symbol", entry("    every: 1s\n    symbols: [GOOG, \"b@d\"]\n"), `schedule "us-minute": symbols: invalid symbol "b@d"`},
		{"bad symbol in file", entry("    every: 1s\n    file: bad.txt\n"), `schedule "us-minute": symbols/file: invalid symbol "not a symbol"`},
		{"missing file", entry("    every: 1s\n    file: nope.txt\n"), `schedule "us-minute": file: open `},
		{"bad queue", entry("    every: 1s\n    symbols: [A]\n    queue: \"a b\"\n"), `schedule "us-minute": queue "a b"`},
		{"max_retry negative", entry("    every: 1s\n    symbols: [A]\n    max_retry: -1\n"), `schedule "us-minute": max_retry -1: want 0 (no retries) or more`},
		{"short timeout", entry("    every: 1s\n    symbols: [A]\n    timeout: 10ms\n"), `schedule "us-minute": timeout: 10ms: want at least 1s`},
		{"bad retention", entry("    every: 1s\n    symbols: [A]\n    retention: forever\n"), `schedule "us-minute": retention: time: invalid duration`},
		{"bad entry timezone", entry("    every: 1s\n    symbols: [A]\n    timezone: Nowhere\n"), `schedule "us-minute": timezone: unknown time zone Nowhere`},
		{"misfire_grace too short", entry("    every: 1s\n    symbols: [A]\n    misfire_grace: 500ms\n"), `invalid schedule: schedule "us-minute": misfire_grace: 500ms: want at least 1s (line 5)`},
		{"misfire_grace zero", entry("    every: 1s\n    symbols: [A]\n    misfire_grace: 0s\n"), `schedule "us-minute": misfire_grace: 0s: want at least 1s (line 5)`},
		{"misfire_grace negative", entry("    every: 1s\n    symbols: [A]\n    misfire_grace: -1m\n"), `schedule "us-minute": misfire_grace: -1m0s: want at least 1s (line 5)`},
		{"misfire_grace no unit", entry("    every: 1s\n    misfire_grace: 60\n    symbols: [A]\n"), `schedule "us-minute": misfire_grace: time: missing unit in duration "60" (line 4)`},
		{"misfire_grace a word", entry("    every: 1s\n    symbols: [A]\n    misfire_grace: soon\n"), `schedule "us-minute": misfire_grace: time: invalid duration "soon" (line 5)`},
		{"misfire_grace a list", entry("    every: 1s\n    symbols: [A]\n    misfire_grace: [1m]\n"), `schedule "us-minute": misfire_grace: want a single value, not a list or mapping (line 5)`},
		{"top-level misfire_grace too short", "misfire_grace: 10ms\n" + entry("    every: 1s\n    symbols: [A]\n"), "invalid schedule: misfire_grace: 10ms: want at least 1s (line 1)"},
		{"top-level misfire_grace a word", "timezone: UTC\nmisfire_grace: later\n" + entry("    every: 1s\n    symbols: [A]\n"), `invalid schedule: misfire_grace: time: invalid duration "later" (line 2)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml), dir, fakeMarkets)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse: err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: err = %q, want it to contain %q", err, tc.want)
			}
			for _, goType := range []string{"schedule.raw", "[]string", "!!seq", "unmarshal"} {
				if strings.Contains(err.Error(), goType) {
					t.Errorf("Parse: err = %q speaks of %s", err, goType)
				}
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(path, []byte("schedules:\n  - name: x\n    every: 1\n    symbols: [A]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, fakeMarkets)
	if want := path + `: invalid schedule: schedule "x": every: `; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load: err = %v, want prefix %q", err, want)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), fakeMarkets); !errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: err = %v, want ErrInvalid and ErrNotExist", err)
	}
}

// TestMaxRetryReachesTheTask checks that max_retry 0 means no retries, not
// "unset": the task built from the entry's options carries the limit.
func TestMaxRetryReachesTheTask(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		want        int
	}{
		{"unset: the task's default", "", tasks.DefaultMaxRetry},
		{"zero: no retries", "    max_retry: 0\n", 0},
		{"three", "    max_retry: 3\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte("schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n"+tc.field), t.TempDir(), fakeMarkets)
			if err != nil {
				t.Fatal(err)
			}
			task, err := tasks.NewQuoteFetchTask("GOOG", cfg.Entries[0].options()...)
			if err != nil {
				t.Fatal(err)
			}
			if got := task.Headers()[tasks.HeaderMaxRetry]; got != strconv.Itoa(tc.want) {
				t.Errorf("header %s = %q, want %d", tasks.HeaderMaxRetry, got, tc.want)
			}
		})
	}
}
