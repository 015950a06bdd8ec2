package tasks

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestNewQuoteFetchTask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		symbol  string
		opts    []asynq.Option
		want    string // payload symbol; "" when an error is expected
		wantErr error
	}{
		{"upper-cases", "brk.b", nil, "BRK.B", nil},
		{"dash", "RDS-A", nil, "RDS-A", nil},
		{"caller options", "GOOG", []asynq.Option{asynq.MaxRetry(1), asynq.Timeout(time.Second), asynq.Queue("low")}, "GOOG", nil},
		{"bad character", "BAD$", nil, "", ErrInvalidSymbol},
		{"empty", "", nil, "", ErrInvalidSymbol},
		{"too long", "ABCDEFGHIJKLMNOP", nil, "", ErrInvalidSymbol},
		{"leading dot", ".A", nil, "", ErrInvalidSymbol},
		{"zero retries", "GOOG", []asynq.Option{asynq.MaxRetry(0)}, "GOOG", nil},
		{"sub-second timeout", "GOOG", []asynq.Option{asynq.Timeout(500 * time.Millisecond)}, "", ErrInvalidOption},
	} {
		task, err := NewQuoteFetchTask(tc.symbol, tc.opts...)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var p QuoteFetchPayload
		if err := json.Unmarshal(task.Payload(), &p); err != nil || p.Symbol != tc.want || task.Type() != TypeQuoteFetch {
			t.Errorf("%s: type %s payload %s (%v), want symbol %s", tc.name, task.Type(), task.Payload(), err, tc.want)
		}
	}
}

func TestParseQuoteFetchPayload(t *testing.T) {
	t.Parallel()
	if p, err := ParseQuoteFetchPayload([]byte(`{"symbol":"goog","added_later":1}`)); err != nil || p.Symbol != "GOOG" {
		t.Errorf("payload with an unknown field: %+v, %v; want GOOG (newer producers may add fields)", p, err)
	}
	for _, bad := range []string{``, `[]`, `{"symbol":5}`, `{"symbol":"BAD$"}`, `{}`} {
		if _, err := ParseQuoteFetchPayload([]byte(bad)); err == nil {
			t.Errorf("payload %q accepted", bad)
		}
	}
}

// TestValidSymbolMatchesThePattern checks the hand-written check against
// the contract's pattern on every short string over an alphabet that
// covers each case, and on random bytes.
func TestValidSymbolMatchesThePattern(t *testing.T) {
	t.Parallel()
	pattern := regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,14}$`)
	alphabet := []string{"A", "Z", "0", "9", ".", "-", "a", "_", " ", "$", "é", "\x00"}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		if got, want := validSymbol(prefix), pattern.MatchString(prefix); got != want {
			t.Errorf("validSymbol(%q) = %v, the pattern says %v", prefix, got, want)
		}
		if depth == 3 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth+1)
		}
	}
	walk("", 0)
	for _, s := range []string{strings.Repeat("A", 15), strings.Repeat("A", 16), "A" + strings.Repeat("-", 14), "BRK.B", "RDS-A"} {
		if got, want := validSymbol(s), pattern.MatchString(s); got != want {
			t.Errorf("validSymbol(%q) = %v, the pattern says %v", s, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		b := make([]byte, r.IntN(18))
		for i := range b {
			b[i] = byte(r.IntN(128))
		}
		if got, want := validSymbol(string(b)), pattern.Match(b); got != want {
			t.Fatalf("validSymbol(%q) = %v, the pattern says %v", b, got, want)
		}
	}
}
