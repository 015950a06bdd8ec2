package schedule

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickerq/tickerq/tasks"
)

// fuzzSymbolFile is the only symbol file FuzzScheduleConfig lets an input
// name: any other path could be a FIFO or a device that blocks the fuzzer.
const fuzzSymbolFile = "list.txt"

// onlyFuzzFile reports whether every `file:` field in the YAML document n
// names fuzzSymbolFile, so that parsing reads nothing outside the test's
// directory.
func onlyFuzzFile(n *yaml.Node, seen map[*yaml.Node]bool) bool {
	if n == nil || seen[n] {
		return true
	}
	seen[n] = true
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := resolve(n.Content[i+1]); n.Content[i].Value == "file" && (v.Kind != yaml.ScalarNode || v.Value != fuzzSymbolFile) {
				return false
			}
		}
	}
	for _, c := range n.Content {
		if !onlyFuzzFile(c, seen) {
			return false
		}
	}
	return onlyFuzzFile(n.Alias, seen)
}

// FuzzScheduleConfig feeds arbitrary YAML to the schedule parser. Nothing
// panics; an accepted file has only valid entries (names by the pattern and
// unique, exactly one of cron and every, at least one valid symbol, positive
// durations, a misfire_grace of at least 1s, a time zone); and writing the
// entries back as YAML parses to the same entries.
func FuzzScheduleConfig(f *testing.F) {
	for _, s := range []string{
		"timezone: America/New_York\nschedules:\n  - name: us-minute\n    cron: \"* * * * *\"\n    market: XNYS\n    symbols: [AAPL, msft]\n",
		"schedules:\n  - name: a\n    every: 30s\n    symbols: [GOOG]\n    queue: low\n    max_retry: 3\n    timeout: 5s\n    retention: 1h\n    timezone: Europe/London\n",
		"schedules:\n  - name: a\n    every: 1s\n    file: list.txt\n    symbols: [GOOG, goog]\n",
		"schedules:\n  - name: a\n    every: 999ms\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    cron: \"0 0 30 2 *\"\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    cron: \"CRON_TZ=Asia/Tokyo 0 9 * * 1-5\"\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    cron: \"0 3 * * *\"\n    market: XNYS\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    cron: \"* * * * *\"\n    every: 1m\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n  - name: a\n    every: 1m\n    symbols: [AAPL]\n",
		"schedules:\n  - &e\n    name: a\n    every: 1m\n    symbols: [GOOG]\n  - *e\n",
		"x: &x [*x]\nschedules: *x\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    max_retry: 0\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    max_retry: 1.5\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    queue: \"a b\"\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [\"-bad\"]\n",
		"schedules:\n  - name: -a\n    every: 1m\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    timezone: ../../etc/passwd\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    unknown: 1\n",
		"schedules:\n  - name: a\n    name: b\n    every: 1m\n    symbols: [GOOG]\n",
		"schedules:\n  - name: a\n    every: 2562047h47m16.854775807s\n    symbols: [GOOG]\n",
		"schedules: []\n", "schedules:\n", "", "---\n...\n", "[]", "null", "schedules: [1]\n",
		"timezone: Nowhere/Else\nschedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n",
		"misfire_grace: 5m\nschedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n  - name: b\n    cron: \"0 17 * * *\"\n    symbols: [BP]\n    misfire_grace: 2h\n",
		"schedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n    misfire_grace: 999ms\n",
		"misfire_grace: 0\nschedules:\n  - name: a\n    every: 1m\n    symbols: [GOOG]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fuzzSymbolFile), []byte("# watchlist\r\nmsft\r\n\r\nBRK.B\n"), 0o644); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) == nil && !onlyFuzzFile(&doc, map[*yaml.Node]bool{}) {
			t.Skip("names a symbol file other than " + fuzzSymbolFile)
		}
		cfg, err := parseAt(data, dir, fakeMarkets, fuzzNow)
		if err != nil {
			return
		}
		checkConfig(t, cfg)
		again, err := parseAt(writeConfig(t, cfg), dir, fakeMarkets, fuzzNow)
		if err != nil {
			t.Fatalf("accepted %q, but not as written back: %v", data, err)
		}
		if len(again.Entries) != len(cfg.Entries) {
			t.Fatalf("%d entries, %d written back", len(cfg.Entries), len(again.Entries))
		}
		for i, e := range cfg.Entries {
			if a := again.Entries[i]; !e.same(a) {
				t.Fatalf("entry %+v parsed back as %+v", e, a)
			}
		}
	})
}

// checkConfig fails t unless every entry of cfg is valid.
func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	if len(cfg.Entries) == 0 {
		t.Fatal("accepted a file without entries")
	}
	names := map[string]bool{}
	for _, e := range cfg.Entries {
		switch {
		case !namePattern.MatchString(e.Name) || names[e.Name]:
			t.Fatalf("entry name %q invalid or repeated", e.Name)
		case (e.Cron == "") == (e.Every == 0), (e.Cron == "") != (e.spec == nil):
			t.Fatalf("entry %q: cron %q and every %v: want exactly one", e.Name, e.Cron, e.Every)
		case e.Cron == "" && e.Every < MinEvery:
			t.Fatalf("entry %q: every %v under %v", e.Name, e.Every, MinEvery)
		case len(e.Symbols) == 0:
			t.Fatalf("entry %q: no symbols", e.Name)
		case !validQueue(e.Queue):
			t.Fatalf("entry %q: queue %q", e.Name, e.Queue)
		case e.MaxRetry < 0, e.Timeout < 0, e.Retention < time.Second, e.Location == nil, e.MisfireGrace < MinMisfireGrace:
			t.Fatalf("entry %q: max_retry %d, timeout %v, retention %v, location %v, misfire_grace %v",
				e.Name, e.MaxRetry, e.Timeout, e.Retention, e.Location, e.MisfireGrace)
		case (e.MarketCode == "") != (e.Market == nil):
			t.Fatalf("entry %q: market %q without its calendar", e.Name, e.MarketCode)
		}
		names[e.Name] = true
		seen := map[string]bool{}
		for _, s := range e.Symbols {
			if !isNormalized(s) || seen[s] {
				t.Fatalf("entry %q: symbol %q invalid or repeated", e.Name, s)
			}
			seen[s] = true
		}
		if _, err := e.Next(fuzzNow); err != nil && e.Market == nil {
			t.Fatalf("entry %q: next slot: %v", e.Name, err)
		}
	}
}

// fuzzNow is the time FuzzScheduleConfig parses at.
var fuzzNow = time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)

func isNormalized(s string) bool {
	n, err := tasks.NormalizeSymbol(s)
	return err == nil && n == s
}

// writeConfig writes cfg's entries back as a schedule file, every field
// explicit.
func writeConfig(t *testing.T, cfg *Config) []byte {
	t.Helper()
	var entries []map[string]any
	for _, e := range cfg.Entries {
		m := map[string]any{
			"name": e.Name, "symbols": e.Symbols, "queue": e.Queue,
			"retention": e.Retention.String(), "timezone": e.Location.String(),
			"misfire_grace": e.MisfireGrace.String(),
		}
		if e.Cron != "" {
			m["cron"] = e.Cron
		} else {
			m["every"] = e.Every.String()
		}
		if e.MarketCode != "" {
			m["market"] = e.MarketCode
		}
		if e.MaxRetry != tasks.DefaultMaxRetry {
			m["max_retry"] = e.MaxRetry
		}
		if e.Timeout != 0 {
			m["timeout"] = e.Timeout.String()
		}
		entries = append(entries, m)
	}
	out, err := yaml.Marshal(map[string]any{"schedules": entries})
	if err != nil {
		t.Fatalf("write back: %v", err)
	}
	return out
}
