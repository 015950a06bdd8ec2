package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/tasks"
)

type recorder struct {
	mu       sync.Mutex
	outcomes []string
}

func (r *recorder) ObserveJob(_, outcome string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, outcome)
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err          error
		retried, max int
		want         string
	}{
		{nil, 0, 3, OutcomeSuccess},
		{errors.New("boom"), 0, 3, OutcomeRetry},
		{errors.New("boom"), 3, 3, OutcomeArchived},
		{tasks.ErrUnknownSymbol, 0, 3, OutcomeArchived},
		{&tasks.StatusError{Code: 429}, 2, 3, OutcomeRateLimited},
		{&tasks.StatusError{Code: 429}, 3, 3, OutcomeArchived}, // asynq archives on the last attempt
		// tasks.HeaderMaxRetry 1, so asynq's 2: the last allowed attempt.
		{&tasks.StatusError{Code: 429}, 1, 2, OutcomeRateLimited},
		{fmt.Errorf("job: %w", tasks.ErrRetriesExhausted), 1, 2, OutcomeArchived},
		{&tasks.ThrottledError{RetryAfter: time.Second}, 0, 3, OutcomeRateLimited},
		{&tasks.StatusError{Code: 503}, 1, 3, OutcomeRetry},
		{fmt.Errorf("job: %w", tasks.ErrStale), 3, 3, OutcomeStale},
	} {
		if got := Outcome(tc.err, tc.retried, tc.max); got != tc.want {
			t.Errorf("Outcome(%v, %d, %d) = %s, want %s", tc.err, tc.retried, tc.max, got, tc.want)
		}
	}
}

func TestObserveLogsEachJobOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	rec := &recorder{}
	h := Observe(zerolog.New(&buf), rec, nil)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		return tasks.ErrUnknownSymbol
	}))
	task, err := tasks.NewQuoteFetchTask("goog")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), task); !errors.Is(err, tasks.ErrUnknownSymbol) {
		t.Fatalf("error not passed through: %v", err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", len(lines), buf.String())
	}
	var ev map[string]any
	if err := json.Unmarshal(lines[0], &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": tasks.TypeQuoteFetch, "symbol": "GOOG", "outcome": OutcomeArchived, "level": "error",
		"max_retry": float64(tasks.DefaultMaxRetry)} // the caller's limit, not asynq's
	for k, want := range want {
		if ev[k] != want {
			t.Errorf("log field %s = %v, want %v", k, ev[k], want)
		}
	}
	for _, k := range []string{"task_id", "queue", "retried", "duration_ms", "error"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, lines[0])
		}
	}
	if len(rec.outcomes) != 1 || rec.outcomes[0] != OutcomeArchived {
		t.Errorf("recorded outcomes %v", rec.outcomes)
	}
}
