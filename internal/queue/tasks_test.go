package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

func TestReadTaskList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []TaskRef
		wantErr string
	}{
		{"empty", "\n\n", nil, ""},
		{"text", "a\tGOOG\tdefault\r\nb\tMSFT\tlow\n", []TaskRef{{"a", "GOOG", "default"}, {"b", "MSFT", "low"}}, ""},
		{"json and text, repeats once", `{"id":"a","symbol":"GOOG","queue":"default"}` + "\n\na\tGOOG\tdefault\n  {\"queue\":\"low\",\"id\":\"c\"}  \n",
			[]TaskRef{{"a", "GOOG", "default"}, {"c", "", "low"}}, ""},
		{"two fields", "a\tGOOG\n", nil, "line 1: want ID<TAB>SYMBOL<TAB>QUEUE or a JSON object, got 2 tab-separated fields"},
		{"spaces are not tabs", "ok\tX\tq\na GOOG default\n", nil, "line 2: want ID<TAB>SYMBOL<TAB>QUEUE"},
		{"bad json", "{\"id\":\n", nil, "line 1: not a JSON task object"},
		{"no queue", `{"id":"a"}`, nil, "line 1: want a task id and a queue"},
		{"no id", "\tGOOG\tdefault", nil, "line 1: want a task id and a queue"},
	}
	for _, tt := range tests {
		got, err := ReadTaskList(strings.NewReader(tt.in))
		if tt.wantErr != "" {
			if !errors.Is(err, ErrBadTaskList) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want ErrBadTaskList with %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: ReadTaskList = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestTaskDetail(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		task Task
		want string
	}{
		{Task{State: "archived", Error: "fetch X:\tunknown\nsymbol"}, "fetch X: unknown symbol"},
		{Task{State: "retry", Error: "HTTP 503"}, "HTTP 503"},
		{Task{State: "completed", Result: json.RawMessage(`{"price": 1.5}`)}, `{"price": 1.5}`},
		{Task{State: "completed", Result: json.RawMessage(`"plain\ttext"`)}, "plain text"},
		{Task{State: "scheduled", NextProcessAt: &at}, "2030-01-02T15:04:05Z"},
		{Task{State: "pending", NextProcessAt: &at, Error: "old"}, ""},
		{Task{State: "active"}, ""},
	}
	for _, tt := range tests {
		if got := tt.task.Detail(); got != tt.want {
			t.Errorf("Detail(%+v) = %q, want %q", tt.task, got, tt.want)
		}
	}
}

func TestParseState(t *testing.T) {
	t.Parallel()
	for _, name := range States {
		s, err := ParseState(name, States)
		if err != nil || s.String() != name {
			t.Errorf("ParseState(%q) = %v, %v", name, s, err)
		}
	}
	for _, bad := range []string{"", "Pending", "aggregating", "done"} {
		if _, err := ParseState(bad, States); err == nil {
			t.Errorf("ParseState(%q): want an error", bad)
		}
	}
	_, err := ParseState("active", DeletableStates)
	if want := `state "active": want one of pending, scheduled, retry, archived, completed`; err == nil || err.Error() != want {
		t.Errorf("ParseState(active, DeletableStates) error = %v, want %q", err, want)
	}
}

func redisClient(t testing.TB, b bundle) redis.UniversalClient {
	t.Helper()
	rdb, ok := b.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		t.Fatalf("MakeRedisClient returned %T", rdb)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func refsOf(res []Result) []TaskRef {
	refs := make([]TaskRef, len(res))
	for i, r := range res {
		refs[i] = TaskRef{ID: r.ID, Symbol: r.Symbol, Queue: r.Queue}
	}
	return refs
}

func TestWaitTasksStates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rdb := redisClient(t, b)
	res := mustEnqueue(t, b, symbolsN(3))
	hold := mustEnqueue(t, b, []string{"HOLD"}, asynq.Queue("hold")) // no worker reads it
	refs := append(refsOf(res), refsOf(hold)[0], TaskRef{ID: "never", Symbol: "X", Queue: "default"})
	if err := b.inspector.ArchiveTask("default", res[0].ID); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { _ = b.inspector.DeleteTask("hold", hold[0].ID) })
	runWorker(t, b, "default")

	var polls []int
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	w, err := WaitTasks(ctx, rdb, refs, 20*time.Millisecond, func(w TaskWait) { polls = append(polls, w.Done()) })
	if err != nil {
		t.Fatalf("WaitTasks: %v", err)
	}
	want := TaskWait{Total: 5, Completed: 2, Archived: 1, Gone: 1, Missing: []TaskRef{refs[4]}}
	if w.Total != want.Total || w.Completed != want.Completed || w.Archived != want.Archived || w.Gone != want.Gone ||
		!slices.Equal(w.Missing, want.Missing) || w.Outstanding != nil {
		t.Errorf("WaitTasks = %+v, want %+v", w, want)
	}
	if len(polls) < 3 || polls[0] < 2 || polls[len(polls)-1] != 5 || !slices.IsSorted(polls) {
		t.Errorf("progress after each poll = %v, want at least 2 (archived, missing) first, rising to 5", polls)
	}
}

func TestWaitTasksTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rdb := redisClient(t, b)
	refs := refsOf(mustEnqueue(t, b, symbolsN(7)))
	refs = append(refs, refsOf(mustEnqueue(t, b, []string{"GOOG"}, asynq.Queue("low"), asynq.ProcessIn(time.Hour)))...)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := WaitTasks(ctx, rdb, refs, 0, nil)
	want := fmt.Sprintf("timed out; still outstanding: 8 of 8 tasks: default (pending 7), low (scheduled 1); %s S00000 (pending in default), ", refs[0].ID)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), " and 3 more") {
		t.Errorf("WaitTasks = %v, want ErrTimeout with %q… and 3 more", err, want)
	}

	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := WaitTasks(ctx, rdb, refs, 0, nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancelled WaitTasks = %v, want context.Canceled", err)
	}
}

// BenchmarkTaskStates measures one poll of WaitTasks over 100 000 tasks.
func BenchmarkTaskStates(b *testing.B) {
	bb := bundle{redis: testenv.RedisClientOpt(b, testenv.RedisURL(b))}
	rdb, ok := bb.redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		b.Fatal("not a go-redis client")
	}
	defer rdb.Close()
	const n = 100_000
	refs := make([]TaskRef, n)
	ctx := b.Context()
	for start := 0; start < n; start += lookupBatch {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+lookupBatch, n); i++ {
				refs[i] = TaskRef{ID: fmt.Sprintf("id-%06d", i), Queue: "default"}
				p.HSet(ctx, taskKey("default", refs[i].ID), "state", "pending", "msg", "x")
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("pipelined", func(b *testing.B) {
		for b.Loop() {
			states, err := TaskStates(ctx, rdb, refs)
			if err != nil || states[n-1] != "pending" {
				b.Fatalf("TaskStates: %v, last %q", err, states[n-1])
			}
		}
	})
	b.Run("one round trip per task", func(b *testing.B) { // what the pipeline saves
		for b.Loop() {
			for _, r := range refs {
				if err := rdb.HGet(ctx, taskKey(r.Queue, r.ID), "state").Err(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
