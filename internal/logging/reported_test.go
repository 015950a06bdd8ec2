package logging_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/middleware"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// linesAbout returns the messages of the log lines in out that name task id.
func linesAbout(t *testing.T, out *logging.SyncBuffer, id string) []string {
	t.Helper()
	var msgs []string
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if !strings.Contains(line, id) {
			continue
		}
		var ev struct{ Message string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msgs = append(msgs, ev.Message)
	}
	return msgs
}

// TestAsynqLeavesOutWhatTheJobLineSaid runs a real asynq server with the
// worker's middleware and logger adapter, and counts the lines logged about
// one task that ends in the archive.
func TestAsynqLeavesOutWhatTheJobLineSaid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		filter     bool // the adapter gets the middleware's Reported
		middleware bool
		handler    func() error
		want       []string // messages naming the task, in order
	}{
		{
			name: "archived: only the job line", filter: true, middleware: true,
			handler: func() error { return tasks.ErrUnknownSymbol },
			want:    []string{"job"},
		},
		{
			name: "no filter: asynq's warning too", filter: false, middleware: true,
			handler: func() error { return tasks.ErrUnknownSymbol },
			want:    []string{"job", "Retry exhausted for task id=ID"},
		},
		{
			name: "panic: no job line, asynq's warning kept", filter: true, middleware: true,
			handler: func() error { panic("boom") },
			want:    []string{"Retry exhausted for task id=ID"},
		},
		{
			name: "no middleware: asynq's warning kept", filter: true, middleware: false,
			handler: func() error { return tasks.ErrUnknownSymbol },
			want:    []string{"Retry exhausted for task id=ID"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt := testenv.RedisClientOpt(t, testenv.RedisURL(t))
			var out logging.SyncBuffer
			log := zerolog.New(&out)
			reported := &logging.Reported{}
			adapter := logging.Asynq{L: log}
			if tt.filter {
				adapter.Reported = reported
			}
			srv := asynq.NewServer(opt, asynq.Config{
				Concurrency: 1, Logger: adapter, LogLevel: asynq.WarnLevel,
				Queues: map[string]int{"default": 1},
			})
			mux := asynq.NewServeMux()
			if tt.middleware {
				mux.Use(middleware.Observe(log, nopObserver{}, reported))
			}
			mux.HandleFunc(tasks.TypeQuoteFetch, func(context.Context, *asynq.Task) error { return tt.handler() })
			if err := srv.Start(mux); err != nil {
				t.Fatal(err)
			}
			defer srv.Shutdown()

			id := enqueueAndWaitArchived(t, opt)
			srv.Shutdown()
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "ID", id)
			}
			if got := linesAbout(t, &out, id); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("lines about the task: %q, want %q", got, want)
			}
		})
	}
}

// enqueueAndWaitArchived enqueues one task that may not be retried and
// returns its id once asynq has archived it.
func enqueueAndWaitArchived(t *testing.T, opt asynq.RedisConnOpt) string {
	t.Helper()
	client := asynq.NewClient(opt)
	defer client.Close()
	inspector := asynq.NewInspector(opt)
	defer inspector.Close()
	// Not tasks.NewQuoteFetchTask: it refuses MaxRetry(0).
	task := asynq.NewTask(tasks.TypeQuoteFetch, []byte(`{"symbol":"NOSUCH"}`), asynq.MaxRetry(0))
	info, err := client.EnqueueContext(t.Context(), task)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ti, err := inspector.GetTaskInfo(info.Queue, info.ID)
		if err == nil && ti.State == asynq.TaskStateArchived {
			return info.ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not archived within 15 s (last: %+v, %v)", info.ID, ti, err)
		}
	}
}

type nopObserver struct{}

func (nopObserver) ObserveJob(string, string, time.Duration) {}

func TestAsynqWarnKeepsOtherMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		reported []string
		msg      string
		kept     bool
	}{
		{"reported archive", []string{"t1"}, "Retry exhausted for task id=t1", false},
		{"reported revoke", []string{"t1"}, "revoke task id=t1", false},
		{"archive of another task", []string{"t1"}, "Retry exhausted for task id=t2", true},
		{"task id prefix is not the task", []string{"t1"}, "Retry exhausted for task id=t10", true},
		{"other warning", []string{"t1"}, "Quitting worker. task id=t1", true},
		{"nothing reported", nil, "Retry exhausted for task id=t1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out logging.SyncBuffer
			r := &logging.Reported{}
			for _, id := range tt.reported {
				r.Add(id)
			}
			a := logging.Asynq{L: zerolog.New(&out), Reported: r}
			a.Warn(tt.msg)
			a.Warn(tt.msg) // a second time is always kept: each end is said once
			want := 1
			if tt.kept {
				want = 2
			}
			if got := strings.Count(out.String(), tt.msg+`"`); got != want {
				t.Errorf("%q logged %d times, want %d:\n%s", tt.msg, got, want, out.String())
			}
		})
	}
}

func TestAsynqNilReported(t *testing.T) {
	t.Parallel()
	var out logging.SyncBuffer
	logging.Asynq{L: zerolog.New(&out)}.Warn("Retry exhausted for task id=", "x")
	if !strings.Contains(out.String(), "Retry exhausted for task id=x") {
		t.Errorf("without Reported the warning is dropped: %q", out.String())
	}
}
