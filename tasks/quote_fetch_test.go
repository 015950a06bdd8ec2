package tasks

import (
	"encoding/json"
	"errors"
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
		{"zero retries", "GOOG", []asynq.Option{asynq.MaxRetry(0)}, "", ErrInvalidOption},
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
