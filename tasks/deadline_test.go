package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// countingQuotes fails the test if the handler asks it for a quote.
type countingQuotes struct{ calls int }

func (c *countingQuotes) Quote(context.Context, string) (Quote, error) {
	c.calls++
	return Quote{}, errors.New("not expected")
}

func TestNewQuoteFetchTaskWithDeadline(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2027, 1, 15, 9, 31, 0, 500, time.FixedZone("EST", -5*3600))
	task, err := NewQuoteFetchTaskWithDeadline("goog", deadline, asynq.Queue("low"))
	if err != nil {
		t.Fatal(err)
	}
	if got := task.Headers()[HeaderDeadline]; got != "2027-01-15T14:31:00.0000005Z" {
		t.Errorf("header %s = %q", HeaderDeadline, got)
	}
	if got, ok := Deadline(task); !ok || !got.Equal(deadline) {
		t.Errorf("Deadline = %s, %v; want %s", got, ok, deadline)
	}
	if string(task.Payload()) != `{"symbol":"GOOG"}` || task.Type() != TypeQuoteFetch {
		t.Errorf("task %s %s", task.Type(), task.Payload())
	}
	if _, err := NewQuoteFetchTaskWithDeadline("GOOG", time.Time{}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("zero deadline: err = %v, want ErrInvalidOption", err)
	}
	if _, err := NewQuoteFetchTaskWithDeadline("b@d", deadline); !errors.Is(err, ErrInvalidSymbol) {
		t.Errorf("bad symbol: err = %v, want ErrInvalidSymbol", err)
	}
	if _, err := NewQuoteFetchTaskWithDeadline("GOOG", deadline, asynq.Timeout(time.Millisecond)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Timeout(1ms): err = %v, want ErrInvalidOption", err)
	}
}

func TestCheckDeadline(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2027, 1, 15, 14, 31, 0, 0, time.UTC)
	with := func(v string) *asynq.Task {
		return asynq.NewTaskWithHeaders(TypeQuoteFetch, []byte(`{"symbol":"GOOG"}`), map[string]string{HeaderDeadline: v})
	}
	onTime := with(deadline.Format(time.RFC3339Nano))
	tests := []struct {
		name  string
		task  *asynq.Task
		now   time.Time
		stale bool
	}{
		{"before", onTime, deadline.Add(-time.Millisecond), false},
		{"at", onTime, deadline, true},
		{"after", onTime, deadline.Add(time.Hour), true},
		{"no header", asynq.NewTask(TypeQuoteFetch, []byte(`{"symbol":"GOOG"}`)), deadline.Add(time.Hour), false},
		{"unreadable header", with("next tuesday"), deadline.Add(time.Hour), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDeadline(tc.task, tc.now)
			if got := err != nil; got != tc.stale {
				t.Fatalf("checkDeadline = %v, want stale %v", err, tc.stale)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrStale) || !errors.Is(err, asynq.RevokeTask) || Classify(err) != Stale {
				t.Errorf("err %v: want ErrStale, asynq.RevokeTask and class stale", err)
			}
			if errors.Is(err, asynq.SkipRetry) {
				t.Errorf("err %v matches SkipRetry: asynq would archive it", err)
			}
		})
	}
}

// TestHandlerDropsStale: a task past its deadline is dropped before any
// quote is fetched.
func TestHandlerDropsStale(t *testing.T) {
	t.Parallel()
	quotes := &countingQuotes{}
	h := NewQuoteFetchHandler(quotes, nil)
	task, err := NewQuoteFetchTaskWithDeadline("GOOG", time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	err = h.ProcessTask(context.Background(), task)
	if !errors.Is(err, asynq.RevokeTask) || Classify(err) != Stale {
		t.Errorf("ProcessTask = %v, want a stale error wrapping asynq.RevokeTask", err)
	}
	if quotes.calls != 0 {
		t.Errorf("%d quote calls for a stale task", quotes.calls)
	}
	if Stale.String() != "stale" {
		t.Errorf("Stale.String() = %q", Stale.String())
	}
}
