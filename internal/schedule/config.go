// Package schedule runs the entries of a schedule file: it parses and checks
// the YAML, computes each entry's slots (cron or fixed interval, optionally
// only inside an exchange's sessions), and enqueues one quote-fetch task per
// symbol at each slot so that any number of replicas on the same Redis
// enqueue each (entry, symbol, slot) exactly once.
package schedule

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/tickerq/tickerq/internal/queue"
	"github.com/tickerq/tickerq/tasks"
)

// DefaultRetention is how long the completed task of a scheduled firing
// keeps its result when the entry sets no retention: long enough to look at
// in the UI, short enough that Redis memory stays flat under a schedule that
// runs for weeks.
const DefaultRetention = 5 * time.Minute

// MinEvery is the shortest `every` interval.
const MinEvery = time.Second

// DefaultMisfireGrace is how late after its time a slot may still begin
// firing when neither the entry nor the file sets misfire_grace: enough for
// a replica whose timer woke late or that restarted at once, too little to
// catch up yesterday's daily slot on a start today.
const DefaultMisfireGrace = time.Minute

// MinMisfireGrace is the shortest misfire_grace: below it, the moment a
// timer wakes after the slot would decide whether the slot fires.
const MinMisfireGrace = time.Second

// ErrInvalid is wrapped by every error about the schedule file's content.
var ErrInvalid = errors.New("invalid schedule")

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// cronParser is robfig/cron's standard 5-field parser.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// MarketLookup returns the market of an exchange code such as XNYS, or an
// error for an unknown one.
type MarketLookup func(code string) (Market, error)

// Config is a checked schedule file.
type Config struct {
	Path    string   // the file it was read from
	Files   []string // symbol files the entries reference, absolute
	Entries []*Entry
}

// Entry is one checked schedule entry.
type Entry struct {
	Name       string
	Cron       string        // the cron spec, or ""
	Every      time.Duration // the interval, or 0
	MarketCode string        // exchange code, or ""
	Market     Market        // nil unless MarketCode is set
	Symbols    []string      // normalized, without repeats, in file order
	Queue      string
	MaxRetry   int           // tasks.DefaultMaxRetry unless the entry sets max_retry; 0: no retries
	Timeout    time.Duration // 0: the task's default
	Retention  time.Duration
	Location   *time.Location
	// MisfireGrace is how late after a slot its firing may still begin
	// (capped by the slot's interval, see Grace); 0 means
	// DefaultMisfireGrace.
	MisfireGrace time.Duration

	spec cron.Schedule // nil for every
}

// rawFile is the YAML as written.
type rawFile struct {
	Timezone     string
	MisfireGrace time.Duration // 0 if not set
	Schedules    []*yaml.Node
}

// fileDefaults are the file's top-level defaults for its entries.
type fileDefaults struct {
	location     *time.Location
	misfireGrace time.Duration
}

// rawEntry is one entry as written, its fields read by decode.
type rawEntry struct {
	Name      string
	Cron      string
	Every     string
	Market    string
	Symbols   []string
	File      string
	Queue     string
	MaxRetry  *int
	Timeout   string
	Retention string
	Timezone  string
	// MisfireGrace is read (and checked) with the line it is on, 0 if not
	// set.
	MisfireGrace time.Duration
}

// Load reads and checks the schedule file at path. Symbol files are read
// relative to its directory; markets resolves market codes. Every problem
// with the content is an error wrapping ErrInvalid that names the entry and
// the field, e.g. `schedule "us-minute": cron: ...`.
func Load(path string, markets MarketLookup) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg, err := Parse(data, filepath.Dir(abs), markets)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.Path = abs
	return cfg, nil
}

// Parse checks a schedule file's content; dir is where relative symbol
// files are looked up. Entries must fire inside their market's sessions
// within a year from now.
func Parse(data []byte, dir string, markets MarketLookup) (*Config, error) {
	return parseAt(data, dir, markets, time.Now())
}

// parseAt is Parse with the time the year of firings is counted from.
func parseAt(data []byte, dir string, markets MarketLookup, now time.Time) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%w: the file is empty: want a schedules list", ErrInvalid)
	}
	raw, err := decodeFile(resolve(doc.Content[0]))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defaults := fileDefaults{location: time.UTC, misfireGrace: cmp.Or(raw.MisfireGrace, DefaultMisfireGrace)}
	if raw.Timezone != "" {
		loc, err := time.LoadLocation(raw.Timezone)
		if err != nil {
			return nil, fmt.Errorf("%w: timezone: %w", ErrInvalid, err)
		}
		defaults.location = loc
	}
	if len(raw.Schedules) == 0 {
		return nil, fmt.Errorf("%w: schedules: want at least one entry", ErrInvalid)
	}
	cfg := &Config{}
	seen := map[string]bool{}
	files := map[string]bool{}
	for i, node := range raw.Schedules {
		var re rawEntry
		err := re.decode(node)
		var e *Entry
		var file string
		if err == nil {
			e, file, err = re.check(dir, defaults, markets, now)
		}
		if err != nil {
			name := fmt.Sprintf("schedule %q", re.Name)
			if re.Name == "" {
				name = fmt.Sprintf("schedule #%d", i+1)
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("%w: schedule %q: name: used by an earlier entry", ErrInvalid, e.Name)
		}
		seen[e.Name] = true
		if file != "" && !files[file] {
			files[file] = true
			cfg.Files = append(cfg.Files, file)
		}
		cfg.Entries = append(cfg.Entries, e)
	}
	return cfg, nil
}

// parseCron is cronParser.Parse without its panic: robfig/cron v3.0.1
// slices a "TZ=" or "CRON_TZ=" spec up to its first space, and a spec with
// no space panics (found by FuzzScheduleConfig).
func parseCron(spec string) (cron.Schedule, error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, fmt.Errorf("%q: want the 5 fields after the time zone", spec)
	}
	return cronParser.Parse(spec)
}

// resolve follows a YAML alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// fields calls field for each key of the mapping n, once per key; errors
// name the key and its line, and a key field does not know is an unknown
// field.
func fields(n *yaml.Node, what string, field func(key string, v *yaml.Node) (bool, error)) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want %s (line %d)", what, n.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if seen[k.Value] {
			return fmt.Errorf("%s: repeated field (line %d)", k.Value, k.Line)
		}
		seen[k.Value] = true
		known, err := field(k.Value, v)
		if !known {
			return fmt.Errorf("%s: unknown field (line %d)", k.Value, k.Line)
		}
		if err != nil {
			return fmt.Errorf("%s: %w (line %d)", k.Value, err, v.Line)
		}
	}
	return nil
}

// decodeFile reads the top level of a schedule file.
func decodeFile(n *yaml.Node) (rawFile, error) {
	var raw rawFile
	err := fields(n, "a mapping with a schedules list", func(key string, v *yaml.Node) (bool, error) {
		switch key {
		case "timezone":
			return true, scalar(v, &raw.Timezone)
		case "misfire_grace":
			return true, durationNode(v, MinMisfireGrace, &raw.MisfireGrace)
		case "schedules":
			if v.Tag == "!!null" {
				return true, nil
			}
			if v.Kind != yaml.SequenceNode {
				return true, errors.New("want a list of entries")
			}
			for _, item := range v.Content {
				raw.Schedules = append(raw.Schedules, resolve(item))
			}
			return true, nil
		}
		return false, nil
	})
	return raw, err
}

// decode reads one entry of the schedules list. The name is read first,
// so that an error about another field can name the entry.
func (re *rawEntry) decode(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := resolve(n.Content[i+1]); n.Content[i].Value == "name" && v.Kind == yaml.ScalarNode {
				re.Name = v.Value
			}
		}
	}
	return fields(n, "a mapping of fields", func(key string, v *yaml.Node) (bool, error) {
		switch key {
		case "name":
			return true, scalar(v, &re.Name)
		case "cron":
			return true, scalar(v, &re.Cron)
		case "every":
			return true, scalar(v, &re.Every)
		case "market":
			return true, scalar(v, &re.Market)
		case "symbols":
			if v.Kind != yaml.SequenceNode {
				return true, errors.New("want a list of symbols")
			}
			for _, item := range v.Content {
				var s string
				if err := scalar(resolve(item), &s); err != nil {
					return true, err
				}
				re.Symbols = append(re.Symbols, s)
			}
			return true, nil
		case "file":
			return true, scalar(v, &re.File)
		case "queue":
			return true, scalar(v, &re.Queue)
		case "max_retry":
			var n int
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
				return true, errors.New("want a whole number")
			}
			re.MaxRetry = &n
			return true, nil
		case "timeout":
			return true, scalar(v, &re.Timeout)
		case "retention":
			return true, scalar(v, &re.Retention)
		case "timezone":
			return true, scalar(v, &re.Timezone)
		case "misfire_grace":
			return true, durationNode(v, MinMisfireGrace, &re.MisfireGrace)
		}
		return false, nil
	})
}

// scalar reads a single value (a string, or a number taken as written);
// an empty value leaves dst empty.
func scalar(v *yaml.Node, dst *string) error {
	if v.Kind != yaml.ScalarNode {
		return errors.New("want a single value, not a list or mapping")
	}
	if v.Tag != "!!null" {
		*dst = v.Value
	}
	return nil
}

// check turns one raw entry into an Entry, taking what it does not set
// from the file's defaults; errors name the field. It also refuses an
// entry with a market that has no firing inside a session within a year
// after now: such an entry would never run.
func (re rawEntry) check(dir string, defaults fileDefaults, markets MarketLookup, now time.Time) (*Entry, string, error) {
	if !namePattern.MatchString(re.Name) {
		return nil, "", fmt.Errorf("name %q: want lower-case letters, digits and '-', 1-63 characters, not starting with '-'", re.Name)
	}
	e := &Entry{
		Name: re.Name, Queue: queue.DefaultQueue, MaxRetry: tasks.DefaultMaxRetry, Retention: DefaultRetention, Location: defaults.location,
		MisfireGrace: cmp.Or(re.MisfireGrace, defaults.misfireGrace),
	}
	if re.Timezone != "" {
		loc, err := time.LoadLocation(re.Timezone)
		if err != nil {
			return nil, "", fmt.Errorf("timezone: %w", err)
		}
		e.Location = loc
	}
	switch {
	case re.Cron != "" && re.Every != "":
		return nil, "", errors.New("cron and every: want exactly one of them")
	case re.Cron != "":
		spec, err := parseCron(re.Cron)
		if err != nil {
			return nil, "", fmt.Errorf("cron: %w", err)
		}
		if spec.Next(now).IsZero() {
			return nil, "", fmt.Errorf("cron: %q never fires", re.Cron)
		}
		e.Cron, e.spec = re.Cron, spec
	case re.Every != "":
		d, err := parseDuration(re.Every, MinEvery)
		if err != nil {
			return nil, "", fmt.Errorf("every: %w", err)
		}
		e.Every = d
	default:
		return nil, "", errors.New("cron or every: want exactly one of them")
	}
	if re.Market != "" {
		if markets == nil {
			return nil, "", fmt.Errorf("market: %s: no market calendar available", re.Market)
		}
		m, err := markets(re.Market)
		if err != nil {
			return nil, "", fmt.Errorf("market: %w", err)
		}
		e.MarketCode, e.Market = re.Market, m
		if err := e.firesWithinAYear(now); err != nil {
			return nil, "", err
		}
	}

	raw := re.Symbols
	var file string
	if re.File != "" {
		file = re.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		f, err := os.Open(file)
		if err != nil {
			return nil, "", fmt.Errorf("file: %w", err)
		}
		fromFile, err := queue.ReadSymbols(f)
		_ = f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("file %s: %w", re.File, err)
		}
		raw = append(raw[:len(raw):len(raw)], fromFile...)
	}
	if len(raw) == 0 {
		return nil, "", errors.New("symbols: want at least one symbol in symbols or file")
	}
	seen := make(map[string]bool, len(raw))
	for _, s := range raw {
		sym, err := tasks.NormalizeSymbol(s)
		if err != nil {
			field := "symbols"
			if re.File != "" {
				field = "symbols/file"
			}
			return nil, "", fmt.Errorf("%s: %w", field, err)
		}
		if !seen[sym] {
			seen[sym] = true
			e.Symbols = append(e.Symbols, sym)
		}
	}

	if re.Queue != "" {
		if !validQueue(re.Queue) {
			return nil, "", fmt.Errorf("queue %q: want a non-empty name without whitespace", re.Queue)
		}
		e.Queue = re.Queue
	}
	if re.MaxRetry != nil {
		if *re.MaxRetry < tasks.MinMaxRetry {
			return nil, "", fmt.Errorf("max_retry %d: want %d (no retries) or more", *re.MaxRetry, tasks.MinMaxRetry)
		}
		e.MaxRetry = *re.MaxRetry
	}
	var err error
	if e.Timeout, err = duration("timeout", re.Timeout, tasks.MinTimeout, 0); err != nil {
		return nil, "", err
	}
	if e.Retention, err = duration("retention", re.Retention, time.Second, DefaultRetention); err != nil {
		return nil, "", err
	}
	return e, file, nil
}

// firesWithinAYear checks that a market entry has a firing inside a
// session within a year after now, naming the cron or every field if not.
func (e *Entry) firesWithinAYear(now time.Time) error {
	field, value := "every", e.Every.String()
	if e.spec != nil {
		field, value = "cron", strconv.Quote(e.Cron)
	}
	next, err := e.Next(now)
	if err != nil && !errors.Is(err, ErrNoSlot) {
		return fmt.Errorf("market: %w", err)
	}
	if err != nil || next.After(now.AddDate(1, 0, 0)) {
		return fmt.Errorf("%s: %s never falls inside an %s session (none within a year)", field, value, e.MarketCode)
	}
	return nil
}

// duration parses an optional duration field of at least minimum.
func duration(field, s string, minimum, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := parseDuration(s, minimum)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return d, nil
}

// durationNode reads an optional duration of at least minimum from a YAML
// value into dst, leaving dst alone when the value is empty.
func durationNode(v *yaml.Node, minimum time.Duration, dst *time.Duration) error {
	var s string
	if err := scalar(v, &s); err != nil || s == "" {
		return err
	}
	d, err := parseDuration(s, minimum)
	if err != nil {
		return err
	}
	*dst = d
	return nil
}

// parseDuration parses a duration of at least minimum.
func parseDuration(s string, minimum time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < minimum {
		return 0, fmt.Errorf("%s: want at least %s", d, minimum)
	}
	return d, nil
}

func validQueue(name string) bool {
	for _, r := range name {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' {
			return false
		}
	}
	return name != ""
}
