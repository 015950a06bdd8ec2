package quote

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRetryAfter checks that no header value panics ParseRetryAfter or
// gives a delay outside [0, maxRetryAfter], that a refused value gives 0,
// and that delay-seconds are read exactly (clamped to the bound).
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	for _, s := range []string{
		"", " ", "0", "1", "120", " 30 ", "3600", "3601", "-1", "+5", "1.5", "1e3",
		"0x10", "1_000", "18446744073709551615", "18446744073709551616",
		"99999999999999999999999999999999", "Fri, 27 Nov 2026 14:00:30 GMT",
		"Fri, 27 Nov 2026 13:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT",
		"Fri, 27 Nov 2026 14:00:30 PST", "soon", "\x00", "٣",
	} {
		f.Add(s, int64(0))
	}
	f.Add("120", int64(-1<<62))
	f.Add("Fri, 27 Nov 2026 14:00:30 GMT", int64(1<<62))
	f.Fuzz(func(t *testing.T, v string, shift int64) {
		at := now.Add(time.Duration(shift))
		d, ok := ParseRetryAfter(v, at)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, want within [0, %v]", v, d, maxRetryAfter)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, false: a refused value must give 0", v, d)
		}
		again, okAgain := ParseRetryAfter(v, at)
		if again != d || okAgain != ok {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v then %v, %v", v, d, ok, again, okAgain)
		}
		s := strings.TrimSpace(v)
		if s != "" && strings.Trim(s, "0123456789") == "" {
			if !ok {
				t.Fatalf("ParseRetryAfter(%q) refused delay-seconds", v)
			}
			want := maxRetryAfter
			if n, err := strconv.ParseUint(s, 10, 64); err == nil && n < uint64(maxRetryAfter/time.Second) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", v, d, want)
			}
		}
		if got := parseRetryAfterHeader(v, at); got != d {
			t.Fatalf("parseRetryAfterHeader(%q) = %v, ParseRetryAfter gave %v", v, got, d)
		}
	})
}
