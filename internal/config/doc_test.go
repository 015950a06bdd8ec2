package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/testenv"
)

// The reference page, and the outside contract kept beside the repository.
var (
	configurationDoc = filepath.Join("..", "..", "docs", "configuration.md")
	contractDoc      = filepath.Join("..", "..", "..", "shared", "CONTRACT.md")
)

// docRow matches a table row and captures its cells.
var docRow = regexp.MustCompile(`^\|(.*)\|$`)

// envName matches a variable's name in text, QUOTE_<NAME>_KEY included.
var envName = regexp.MustCompile(`[A-Z][A-Z0-9_]*(?:<NAME>[A-Z0-9_]*)?`)

// cells splits a markdown table row into trimmed cells without backticks.
func cells(row string) []string {
	m := docRow.FindStringSubmatch(row)
	if m == nil {
		return nil
	}
	var out []string
	for _, c := range strings.Split(m[1], "|") {
		out = append(out, strings.ReplaceAll(strings.TrimSpace(c), "`", ""))
	}
	return out
}

// docSections returns the rows of the first table under each heading of a
// markdown page, keyed by the heading's text.
func docSections(text string) map[string][][]string {
	out := map[string][][]string{}
	heading, inTable, done := "", false, false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			heading, inTable, done = strings.TrimSpace(strings.TrimLeft(line, "#")), false, false
		case done:
		case strings.HasPrefix(line, "|"):
			c := cells(line)
			if !inTable { // the header row
				inTable = true
				continue
			}
			if strings.HasPrefix(c[0], "---") {
				continue
			}
			out[heading] = append(out[heading], c)
		case inTable:
			done = true
		}
	}
	return out
}

// helpFlag is a flag as --help shows it.
type helpFlag struct{ name, def string }

var (
	flagLine   = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z][a-z0-9-]*)`)
	subcommand = regexp.MustCompile(`^  ([a-z][a-z-]*)\s`)
)

// helpFlags returns the flags of a --help text (not the global ones, not
// --help) with their defaults, "—" where it shows none.
func helpFlags(help string) []helpFlag {
	var out []helpFlag
	section := ""
	for _, line := range strings.Split(help, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			section = line
			continue
		}
		m := flagLine.FindStringSubmatch(line)
		if section != "Flags:" || m == nil || m[1] == "help" {
			continue
		}
		def := "—"
		if i := strings.LastIndex(line, "(default "); i >= 0 && strings.HasSuffix(line, ")") {
			def = strings.Trim(line[i+len("(default "):len(line)-1], `"`)
		}
		out = append(out, helpFlag{m[1], def})
	}
	return out
}

// commands returns key and every command below it, by reading the
// "Available Commands:" of each --help.
func commands(t *testing.T, help func(*testing.T, string) string, key string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(key string)
	walk = func(key string) {
		text := help(t, key)
		out[key] = text
		in := false
		for _, line := range strings.Split(text, "\n") {
			switch {
			case line == "Available Commands:":
				in = true
			case in && line == "":
				in = false
			case in:
				if m := subcommand.FindStringSubmatch(line); m != nil && m[1] != "help" && m[1] != "completion" {
					walk(key + " " + m[1])
				}
			}
		}
	}
	walk(key)
	return out
}

// TestConfigurationDoc checks docs/configuration.md against the programs
// and the contract: its environment table is config.Vars (names and
// defaults); every command with flags has a section whose table lists
// exactly the flags its --help shows, with the same defaults; and every
// variable of the contract's environment table is either in that table
// with the contract's default or named as not in this version yet.
func TestConfigurationDoc(t *testing.T) {
	raw, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := docSections(string(raw))

	documented := map[string]string{}
	for _, row := range doc["Environment"] {
		documented[row[0]] = row[1]
	}
	for _, v := range config.Vars {
		switch got, ok := documented[v.Name]; {
		case !ok:
			t.Errorf("configuration.md, Environment: no row for %s", v.Name)
		case got != v.Default:
			t.Errorf("configuration.md, Environment: %s default %q, the programs use %q", v.Name, got, v.Default)
		}
	}
	for name := range documented {
		if _, ok := config.LookupVar(name); !ok && name != "OTEL_*" {
			t.Errorf("configuration.md, Environment: %s is not a variable the programs read (config.Vars)", name)
		}
	}

	// Every command's flags, by the heading that names the command.
	runHelp := testenv.HelpPrograms(t)
	helps := map[string]string{}
	for _, program := range []string{"worker", "producer", "quoteserver"} {
		for k, v := range commands(t, runHelp, program) {
			helps[k] = v
		}
	}
	sectionOf := func(cmd string) (string, bool) {
		for heading := range doc {
			for _, named := range strings.Split(heading, ", ") {
				if strings.Trim(named, "`") == cmd {
					return heading, true
				}
			}
		}
		return "", false
	}
	for cmd, help := range helps {
		flags := helpFlags(help)
		if len(flags) == 0 {
			continue
		}
		heading, ok := sectionOf(cmd)
		if !ok {
			t.Errorf("configuration.md has no section `%s` for its flags %v", cmd, flags)
			continue
		}
		rows := map[string]string{}
		for _, row := range doc[heading] {
			rows[strings.TrimPrefix(row[0], "--")] = row[1]
		}
		for _, f := range flags {
			switch got, ok := rows[f.name]; {
			case !ok:
				t.Errorf("configuration.md, %s: no row for --%s", heading, f.name)
			case got != f.def:
				t.Errorf("configuration.md, %s: --%s default %q, %s --help says %q", heading, f.name, got, cmd, f.def)
			}
		}
		for name := range rows {
			if !slices.ContainsFunc(flags, func(f helpFlag) bool { return f.name == name }) {
				t.Errorf("configuration.md, %s: --%s is not a flag of %s", heading, name, cmd)
			}
		}
	}

	contract, err := os.ReadFile(contractDoc)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is not beside the repository: the contract was not compared", contractDoc)
	}
	if err != nil {
		t.Fatal(err)
	}
	notYet := envName.FindAllString(strings.Join(slices.Concat(doc["In the contract, not in this version yet"]...), " "), -1)
	for _, row := range docSections(string(contract))["Environment"] {
		for _, name := range strings.Split(row[0], ", ") { // "UI_USER, UI_PASSWORD"
			def := row[1]
			doced, ok := documented[name]
			switch {
			case ok && !sameDefault(def, doced):
				t.Errorf("configuration.md: %s default %q, the contract says %q", name, doced, def)
			case !ok && !slices.Contains(notYet, name):
				t.Errorf("configuration.md: the contract's %s is neither documented nor named as not in this version yet", name)
			}
		}
	}
}

// sameDefault compares a default as the contract words it with the
// reference page's: the same text, or both saying there is none.
func sameDefault(contract, doc string) bool {
	none := func(s string) bool { return strings.HasPrefix(s, "empty") || s == "no limit" }
	return contract == doc || (none(contract) && none(doc))
}
