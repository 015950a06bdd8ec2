package queue

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// contractSymbol is the contract's symbol pattern, applied after upper-casing.
var contractSymbol = regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,14}$`)

// wantSymbols is what ReadSymbols should return for data, written the plain
// way: split on "\n", drop one trailing "\r", strip a leading byte-order
// mark, trim spaces, skip blank and '#' lines. tooLong reports a line whose
// content is over MaxLineLen bytes.
func wantSymbols(data []byte) (symbols []string, tooLong bool) {
	lines := bytes.Split(data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1] // the newline ends the last line
	}
	for i, l := range lines {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if i == 0 {
			l = bytes.TrimPrefix(l, []byte("\uFEFF"))
		}
		if len(l) > MaxLineLen {
			return nil, true
		}
		s := strings.TrimSpace(string(l))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		symbols = append(symbols, s)
	}
	return symbols, false
}

// FuzzEnqueueFile feeds arbitrary files to ReadSymbols, the reader behind
// `producer enqueue --file` and schedule files. It never panics, agrees
// with wantSymbols (comments and blank lines skipped, CRLF handled, long
// lines refused), and whatever Validate then accepts matches the contract's
// pattern.
func FuzzEnqueueFile(f *testing.F) {
	long := strings.Repeat("A", MaxLineLen)
	for _, s := range []string{
		"GOOG\nAAPL\n", "GOOG\r\nAAPL\r\n", "GOOG\r\nAAPL", "# comment\n\n  msft  \n\t\n",
		"\uFEFFGOOG\n", "\uFEFF# bom then comment\nBRK.B\n", "GOOG\rAAPL\n", "GOOG\r\r\n",
		"\n\n\n", "", "#", " # indented comment\n", "brk.b\nrds-a\n-bad\n", "GO OG\n",
		"\x00\n", "\xff\xfe\n", "ſpy\n", long + "\n", long + "\r\n", long + "A\n",
		"\uFEFF" + long + "\n", "\uFEFF" + long + "\r\n", long + "\r\r\n", "A\n" + long + "AA",
		"\u0085GOOG\u00a0\n", "GOOG\u2028AAPL\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadSymbols(bytes.NewReader(data))
		want, tooLong := wantSymbols(data)
		if tooLong {
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("ReadSymbols(%.200q) = %q, %v; want ErrLineTooLong", data, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ReadSymbols(%.200q): %v", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("ReadSymbols(%.200q) = %q, want %q", data, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("ReadSymbols(%.200q) = %q, want %q", data, got, want)
			}
			if strings.Contains(got[i], "\n") || strings.HasPrefix(got[i], "#") || got[i] != strings.TrimSpace(got[i]) {
				t.Fatalf("ReadSymbols(%.200q) returned %q", data, got[i])
			}
		}
		normalized, err := Validate(got)
		var invalid *InvalidSymbolsError
		switch {
		case err == nil:
			for _, s := range normalized {
				if !contractSymbol.MatchString(s) {
					t.Fatalf("Validate accepted %q from %.200q", s, data)
				}
			}
		case errors.As(err, &invalid):
			if len(invalid.Symbols) == 0 || normalized != nil {
				t.Fatalf("Validate(%q) = %q, %v", got, normalized, err)
			}
			for _, s := range invalid.Symbols {
				if contractSymbol.MatchString(strings.ToUpper(s)) {
					t.Fatalf("Validate named %q invalid", s)
				}
			}
		default:
			t.Fatalf("Validate(%q): %v", got, err)
		}
	})
}
