package tasks

import (
	"regexp"
	"strings"
	"testing"
)

// contractSymbol is the symbol pattern as the contract writes it; the
// hand-written validSymbol must agree with it for every input.
var contractSymbol = regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,14}$`)

// FuzzNormalizeSymbol checks that NormalizeSymbol accepts exactly the
// strings whose upper-cased form matches the contract's pattern, returns
// that form, and is idempotent.
func FuzzNormalizeSymbol(f *testing.F) {
	for _, s := range []string{
		"GOOG", "goog", "BRK.B", "rds-a", "A", "0", "-A", ".A", "A..", "A-",
		"ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNOP", "", " GOOG", "GOOG\n", "GO OG",
		"ſpy", "ı", "K", "é", "\xff", "A\x00", "aaaaaaaaaaaaaaa", "ǆ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeSymbol(s)
		upper := strings.ToUpper(s)
		want := contractSymbol.MatchString(upper)
		if (err == nil) != want {
			t.Fatalf("NormalizeSymbol(%q) error = %v; the pattern on %q says valid=%v", s, err, upper, want)
		}
		if err != nil {
			if got != "" {
				t.Fatalf("NormalizeSymbol(%q) = %q with error %v: want \"\"", s, got, err)
			}
			return
		}
		if got != upper {
			t.Fatalf("NormalizeSymbol(%q) = %q, want %q", s, got, upper)
		}
		again, err := NormalizeSymbol(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeSymbol(%q) = %q, %v: not idempotent on %q", got, again, err, s)
		}
	})
}
