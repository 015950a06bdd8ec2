// Package queue is the logic behind the producer CLI: it reads and validates
// stock symbols, enqueues quote-fetch tasks for them in bulk, and reports on
// or waits for the asynq queues that hold them.
package queue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tickerq/tickerq/tasks"
)

// MaxLineLen is the longest line, in bytes, ReadSymbols accepts.
const MaxLineLen = 1024

// ErrLineTooLong is returned by ReadSymbols for a line over MaxLineLen bytes.
var ErrLineTooLong = errors.New("line too long")

// ReadSymbols reads one symbol per line from r. Surrounding spaces are
// trimmed; blank lines and lines starting with '#' are skipped. Symbols are
// returned as written: Validate checks and normalizes them.
func ReadSymbols(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	// Room for a full-length line plus "\r\n"; anything longer is an error.
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineLen+2)

	var symbols []string
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\uFEFF")) // a byte-order mark some editors add
		}
		if len(b) > MaxLineLen {
			return nil, lineTooLong(line)
		}
		s := strings.TrimSpace(string(b))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		symbols = append(symbols, s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lineTooLong(line + 1)
		}
		return nil, fmt.Errorf("read symbols: %w", err)
	}
	return symbols, nil
}

func lineTooLong(line int) error {
	return fmt.Errorf("line %d: %w (over %d bytes)", line, ErrLineTooLong, MaxLineLen)
}

// InvalidSymbolsError names every symbol Validate rejected, in input order
// and without repeats. It matches tasks.ErrInvalidSymbol with errors.Is.
type InvalidSymbolsError struct {
	Symbols []string
}

// Error names each bad symbol quoted, then the rule they break.
func (e *InvalidSymbolsError) Error() string {
	names := make([]string, len(e.Symbols))
	for i, s := range e.Symbols {
		names[i] = strconv.Quote(s)
	}
	noun := "invalid symbols"
	if len(names) == 1 {
		noun = "invalid symbol"
	}
	return noun + " " + strings.Join(names, ", ") + ": " + tasks.SymbolRule
}

// Unwrap lets errors.Is(err, tasks.ErrInvalidSymbol) match.
func (e *InvalidSymbolsError) Unwrap() error { return tasks.ErrInvalidSymbol }

// Validate checks every symbol with tasks.NormalizeSymbol and returns them
// normalized (upper-cased), in input order. If any is invalid it returns a
// nil slice and an *InvalidSymbolsError naming each bad one.
func Validate(symbols []string) ([]string, error) {
	normalized := make([]string, len(symbols))
	var bad []string
	seen := make(map[string]bool)
	for i, s := range symbols {
		n, err := tasks.NormalizeSymbol(s)
		if err != nil {
			if !seen[s] {
				seen[s] = true
				bad = append(bad, s)
			}
			continue
		}
		normalized[i] = n
	}
	if len(bad) > 0 {
		return nil, &InvalidSymbolsError{Symbols: bad}
	}
	return normalized, nil
}
