// Package schedule runs the entries of a schedule file: it parses and checks
// the YAML, computes each entry's slots (cron or fixed interval, optionally
// only inside an exchange's sessions), and enqueues one quote-fetch task per
// symbol at each slot so that any number of replicas on the same Redis
// enqueue each (entry, symbol, slot) exactly once.
package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
	MaxRetry   int           // 0: the task's default
	Timeout    time.Duration // 0: the task's default
	Retention  time.Duration
	Location   *time.Location

	spec cron.Schedule // nil for every
}

// rawFile is the YAML as written.
type rawFile struct {
	Timezone  string     `yaml:"timezone"`
	Schedules []rawEntry `yaml:"schedules"`
}

type rawEntry struct {
	Name      string   `yaml:"name"`
	Cron      string   `yaml:"cron"`
	Every     string   `yaml:"every"`
	Market    string   `yaml:"market"`
	Symbols   []string `yaml:"symbols"`
	File      string   `yaml:"file"`
	Queue     string   `yaml:"queue"`
	MaxRetry  *int     `yaml:"max_retry"`
	Timeout   string   `yaml:"timeout"`
	Retention string   `yaml:"retention"`
	Timezone  string   `yaml:"timezone"`
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
// files are looked up.
func Parse(data []byte, dir string, markets MarketLookup) (*Config, error) {
	var raw rawFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty: want a schedules list", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	fileLoc := time.UTC
	if raw.Timezone != "" {
		loc, err := time.LoadLocation(raw.Timezone)
		if err != nil {
			return nil, fmt.Errorf("%w: timezone: %w", ErrInvalid, err)
		}
		fileLoc = loc
	}
	if len(raw.Schedules) == 0 {
		return nil, fmt.Errorf("%w: schedules: want at least one entry", ErrInvalid)
	}
	cfg := &Config{}
	seen := map[string]bool{}
	files := map[string]bool{}
	for i, re := range raw.Schedules {
		e, file, err := re.check(dir, fileLoc, markets)
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

// check turns one raw entry into an Entry; errors name the field.
func (re rawEntry) check(dir string, fileLoc *time.Location, markets MarketLookup) (*Entry, string, error) {
	if !namePattern.MatchString(re.Name) {
		return nil, "", fmt.Errorf("name %q: want lower-case letters, digits and '-', 1-63 characters, not starting with '-'", re.Name)
	}
	e := &Entry{Name: re.Name, Queue: queue.DefaultQueue, Retention: DefaultRetention, Location: fileLoc}
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
		spec, err := cronParser.Parse(re.Cron)
		if err != nil {
			return nil, "", fmt.Errorf("cron: %w", err)
		}
		if spec.Next(time.Now()).IsZero() {
			return nil, "", fmt.Errorf("cron: %q never fires", re.Cron)
		}
		e.Cron, e.spec = re.Cron, spec
	case re.Every != "":
		d, err := time.ParseDuration(re.Every)
		if err != nil {
			return nil, "", fmt.Errorf("every: %w", err)
		}
		if d < MinEvery {
			return nil, "", fmt.Errorf("every: %s: want at least %s", d, MinEvery)
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
			return nil, "", fmt.Errorf("max_retry %d: want at least %d, so a rate-limited (429) job can be retried", *re.MaxRetry, tasks.MinMaxRetry)
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

// duration parses an optional duration field of at least minimum.
func duration(field, s string, minimum, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if d < minimum {
		return 0, fmt.Errorf("%s: %s: want at least %s", field, d, minimum)
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
