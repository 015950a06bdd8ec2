package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// fakeUpstream is the handler of testServer: a symbol in unknown fails for
// good (as the real handler does for Finnhub's unknown-symbol answer) until
// fix is called, SLOW runs until cancelled, any other symbol succeeds with a
// JSON result.
type fakeUpstream struct {
	unknown   []string
	fixed     atomic.Bool
	started   chan string // task ids of SLOW tasks as they start
	cancelled chan string // task ids of SLOW tasks whose context was cancelled
}

func (u *fakeUpstream) fix() { u.fixed.Store(true) }

func (u *fakeUpstream) handle(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseQuoteFetchPayload(t.Payload())
	if err != nil {
		return err
	}
	id, _ := asynq.GetTaskID(ctx)
	switch {
	case p.Symbol == "SLOW":
		u.started <- id
		<-ctx.Done()
		u.cancelled <- id
		return ctx.Err()
	case slices.Contains(u.unknown, p.Symbol) && !u.fixed.Load():
		return fmt.Errorf("quote %s: unknown symbol\t(c=0, t=0): %w", p.Symbol, asynq.SkipRetry)
	}
	_, err = t.ResultWriter().Write(fmt.Appendf(nil, `{"symbol":%q,"price":1.5}`, p.Symbol))
	return err
}

// testServer runs an asynq server on redisURL's queues until the test ends.
func testServer(t *testing.T, redisURL string, up *fakeUpstream, queues ...string) {
	t.Helper()
	weights := map[string]int{}
	for _, q := range queues {
		weights[q] = 1
	}
	srv := asynq.NewServer(testenv.RedisClientOpt(t, redisURL), asynq.Config{
		Concurrency:       4,
		Queues:            weights,
		Logger:            logging.Asynq{L: zerolog.Nop()},
		LogLevel:          asynq.FatalLevel,
		TaskCheckInterval: 20 * time.Millisecond,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeQuoteFetch, up.handle)
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func newUpstream(unknown ...string) *fakeUpstream {
	return &fakeUpstream{unknown: unknown, started: make(chan string, 10), cancelled: make(chan string, 10)}
}

// lines splits output into its lines.
func lines(out string) []string {
	if out == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// listLine is one line of tasks list --json, decoded strictly.
type listLine struct {
	ID            string          `json:"id"`
	Symbol        string          `json:"symbol"`
	Queue         string          `json:"queue"`
	State         string          `json:"state"`
	Error         string          `json:"error"`
	LastFailedAt  *time.Time      `json:"last_failed_at"`
	Result        json.RawMessage `json:"result"`
	NextProcessAt *time.Time      `json:"next_process_at"`
	CompletedAt   *time.Time      `json:"completed_at"`
	Retried       int             `json:"retried"`
	MaxRetry      int             `json:"max_retry"`
}

func decodeList(t *testing.T, out string) []listLine {
	t.Helper()
	var all []listLine
	for _, l := range lines(out) {
		var v listLine
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		all = append(all, v)
	}
	return all
}

// ids returns the first tab-separated field of each line.
func ids(out string) []string {
	var s []string
	for _, l := range lines(out) {
		id, _, _ := strings.Cut(l, "\t")
		s = append(s, id)
	}
	return s
}

// wantCode fails the test unless r exited with code.
func wantCode(t *testing.T, r result, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d (stdout %q, stderr %q)", what, r.code, code, r.stdout, r.stderr)
	}
}

func TestTasksArchivedListRetryAll(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	up := newUpstream("UNKNOWN", "NOPE")
	testServer(t, url, up, "default")

	enqueued := mustRun(t, url, "", "enqueue", "UNKNOWN", "GOOG", "NOPE")
	out := mustRun(t, url, enqueued, "wait", "--tasks", "-", "--timeout", "20s")
	if want := "3 tasks done: 1 completed, 2 archived\n"; out != want {
		t.Errorf("wait --tasks = %q, want %q", out, want)
	}

	out = mustRun(t, url, "", "tasks", "list", "--queue", "default", "--state", "archived")
	got := lines(out)
	slices.SortFunc(got, func(a, b string) int { return strings.Compare(strings.Split(a, "\t")[1], strings.Split(b, "\t")[1]) })
	if len(got) != 2 {
		t.Fatalf("list archived = %q, want 2 lines", out)
	}
	for i, sym := range []string{"NOPE", "UNKNOWN"} {
		f := strings.Split(got[i], "\t")
		want := "quote " + sym + ": unknown symbol (c=0, t=0): skip retry for the task"
		if len(f) != 4 || f[1] != sym || f[2] != "archived" || f[3] != want {
			t.Errorf("archived line %q, want ID, %s, archived, %q", got[i], sym, want)
		}
	}

	js := decodeList(t, mustRun(t, url, "", "tasks", "list", "--state", "archived", "--json"))
	for _, l := range js {
		if l.Queue != "default" || l.State != "archived" || !strings.Contains(l.Error, "unknown symbol") ||
			l.LastFailedAt == nil || l.MaxRetry != tasks.DefaultMaxRetry || l.Result != nil { // the caller's, not asynq's n+1: see tasks.HeaderMaxRetry
			t.Errorf("archived --json line %+v", l)
		}
	}
	done := decodeList(t, mustRun(t, url, "", "tasks", "list", "--state", "completed", "--json"))
	if len(done) != 1 || done[0].Symbol != "GOOG" || string(done[0].Result) != `{"symbol":"GOOG","price":1.5}` || done[0].CompletedAt == nil {
		t.Errorf("completed --json = %+v, want GOOG with its result as raw JSON", done)
	}
	text := mustRun(t, url, "", "tasks", "list", "--state", "completed")
	if !strings.HasSuffix(text, "\tGOOG\tcompleted\t{\"symbol\":\"GOOG\",\"price\":1.5}\n") {
		t.Errorf("completed text = %q, want the result as DETAIL", text)
	}

	up.fix()
	out = mustRun(t, url, "", "tasks", "retry", "--queue", "default", "--all-archived")
	if out != "retried 2 archived tasks in queue default\n" {
		t.Errorf("retry --all-archived = %q", out)
	}
	out = mustRun(t, url, enqueued, "wait", "--tasks", "-", "--timeout", "20s")
	if want := "3 tasks done: 3 completed, 0 archived\n"; out != want {
		t.Errorf("wait --tasks after retry = %q, want %q", out, want)
	}
	if out := mustRun(t, url, "", "tasks", "list", "--state", "archived"); out != "" {
		t.Errorf("archived after retry = %q, want none", out)
	}
	out = mustRun(t, url, "", "tasks", "retry", "--all-archived", "--json")
	if out != `{"queue":"default","retried":0,"state":"archived"}`+"\n" {
		t.Errorf("retry --all-archived --json = %q", out)
	}
}

// archive enqueues symbols through the binary and archives them with the
// Inspector, returning their ids.
func archive(t *testing.T, url string, symbols ...string) []string {
	t.Helper()
	got := ids(mustRun(t, url, "", append([]string{"enqueue"}, symbols...)...))
	in := asynq.NewInspector(testenv.RedisClientOpt(t, url))
	defer in.Close()
	for _, id := range got {
		if err := in.ArchiveTask("default", id); err != nil {
			t.Fatalf("archive %s: %v", id, err)
		}
	}
	return got
}

func TestTasksRetryByID(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	archived := archive(t, url, "GOOG", "MSFT")
	pending := ids(mustRun(t, url, "", "enqueue", "IBM"))[0]

	out := mustRun(t, url, "", "tasks", "retry", archived[0])
	if want := archived[0] + "\tGOOG\tdefault\tretried (was archived)\nretried 1 of 1 tasks\n"; out != want {
		t.Errorf("retry = %q, want %q", out, want)
	}

	r := run(t, url, "", "tasks", "retry", "--json", archived[1], pending, "no-such-id")
	wantCode(t, r, 1, "retry with a pending and an unknown id")
	var got []opLine
	for _, l := range lines(r.stdout) {
		var v opLine
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, v)
	}
	want := []opLine{
		{ID: archived[1], Symbol: "MSFT", Queue: "default", State: "archived", Action: "retried", OK: true},
		{ID: pending, Symbol: "IBM", Queue: "default", State: "pending", Action: "retried",
			Error: "task " + pending + " is pending, not archived or retry: not retried"},
		{ID: "no-such-id", Action: "retried", Error: "task no-such-id: no such task in queue default"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("retry --json =\n%+v\nwant\n%+v", got, want)
	}
	for _, w := range []string{pending + " is pending", "no-such-id: no such task", "2 of 3 tasks not retried: " + pending + ", no-such-id"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not say %q", r.stderr, w)
		}
	}
	if n := len(lines(mustRun(t, url, "", "tasks", "list", "--state", "pending"))); n != 3 {
		t.Errorf("%d pending after the retries, want 3", n)
	}

	r = run(t, url, "", "tasks", "retry", "--queue", "nosuch", archived[0])
	wantCode(t, r, 1, "retry in an unknown queue")
	wantStderrLine(t, r, "queue nosuch: no such queue (queues: default)")
}

func TestTasksUsageErrors(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"tasks"}, "missing command"},
		{[]string{"tasks", "list"}, "--state is required"},
		{[]string{"tasks", "list", "--state", "done"}, `state "done": want one of pending, active`},
		{[]string{"tasks", "list", "--state", "pending", "--limit", "-1"}, "--limit -1"},
		{[]string{"tasks", "list", "--state", "pending", "--queue", "a b"}, "--queue"},
		{[]string{"tasks", "retry"}, "no task ids given: pass them as arguments, or --all-archived"},
		{[]string{"tasks", "retry", "--all-archived", "x"}, "task ids and --all-archived cannot be used together"},
		{[]string{"tasks", "retry", ""}, `task id ""`},
		{[]string{"tasks", "delete", "x"}, "--state is required: one of pending, scheduled, retry, archived, completed"},
		{[]string{"tasks", "delete", "--state", "done", "x"}, `--state: state "done": want one of pending, scheduled, retry, archived, completed`},
		{[]string{"tasks", "delete", "--state", "pending"}, "no task ids given"},
		{[]string{"tasks", "delete", "--state", "active", "x"}, "--state active: running tasks cannot be deleted; cancel them instead: producer tasks cancel ID"},
		{[]string{"tasks", "delete", "--state", "pending", "--all", "x"}, "task ids and --all cannot"},
		{[]string{"tasks", "cancel"}, "no task ids given"},
		{[]string{"pause"}, "want exactly one queue name"},
		{[]string{"pause", "a", "b"}, "want exactly one queue name"},
		{[]string{"pause", "a b"}, `queue "a b": want a non-empty name`},
		{[]string{"unpause", "a b"}, `queue "a b": want`},
	}
	for _, tt := range tests {
		r := run(t, url, "", tt.args...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", tt.args, r.code, r.stderr)
		}
		wantStderrLine(t, r, tt.want)
	}
	wantNothingEnqueued(t, url)
}

func TestTasksHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"tasks", "--help"}, {"tasks", "list", "--help"}, {"tasks", "retry", "-h"},
		{"tasks", "delete", "--help"}, {"tasks", "cancel", "--help"}, {"pause", "--help"}, {"unpause", "--help"},
	} {
		r := run(t, "redis://127.0.0.1:1/1", "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and usage with examples", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestTasksListPages(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	const n = 2500 // more than two pages of queue.ListPageSize
	var symbols strings.Builder
	for i := range n {
		fmt.Fprintf(&symbols, "S%05d\n", i)
	}
	mustRun(t, url, symbols.String(), "enqueue", "--in", "1h", "--file", "-")

	tests := []struct {
		limit []string
		want  int
		note  string
	}{
		{nil, 100, "showed 100 of 2500 scheduled tasks in queue default; --limit 0 shows all"},
		{[]string{"--limit", "1500"}, 1500, "showed 1500 of 2500"},
		{[]string{"--limit", "0"}, n, ""},
		{[]string{"--limit", "3000"}, n, ""},
	}
	for _, tt := range tests {
		r := run(t, url, "", append([]string{"tasks", "list", "--state", "scheduled"}, tt.limit...)...)
		wantCode(t, r, 0, fmt.Sprint(tt.limit))
		got := ids(r.stdout)
		if len(got) != tt.want || len(slices.Compact(slices.Sorted(slices.Values(got)))) != tt.want {
			t.Errorf("%q: %d lines (%d distinct ids), want %d", tt.limit, len(got), len(slices.Compact(slices.Sorted(slices.Values(got)))), tt.want)
		}
		if tt.note == "" && r.stderr != "" || !strings.Contains(r.stderr, tt.note) {
			t.Errorf("%q: stderr %q, want %q", tt.limit, r.stderr, tt.note)
		}
	}
	line := lines(mustRun(t, url, "", "tasks", "list", "--state", "scheduled", "--limit", "1"))[0]
	f := strings.Split(line, "\t")
	at, err := time.Parse(time.RFC3339, f[3])
	if len(f) != 4 || f[2] != "scheduled" || err != nil || time.Until(at) < 50*time.Minute {
		t.Errorf("scheduled line %q: want the next run, an hour from now, in RFC 3339", line)
	}
}

func TestTasksDelete(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	sched := ids(mustRun(t, url, "", "enqueue", "--in", "1h", "GOOG", "MSFT", "IBM"))
	pending := ids(mustRun(t, url, "", "enqueue", "AAPL"))

	out := mustRun(t, url, "", "tasks", "delete", "--queue", "default", "--state", "scheduled", sched[0])
	if want := sched[0] + "\tGOOG\tdefault\tdeleted (was scheduled)\ndeleted 1 of 1 tasks\n"; out != want {
		t.Errorf("delete = %q, want %q", out, want)
	}
	r := run(t, url, "", "tasks", "delete", "--state", "scheduled", pending[0], sched[0])
	wantCode(t, r, 1, "delete a pending and a deleted task as scheduled")
	for _, w := range []string{pending[0] + " is pending, not scheduled: not deleted", sched[0] + ": no such task in queue default", "2 of 2 tasks not deleted"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not say %q", r.stderr, w)
		}
	}
	out = mustRun(t, url, "", "tasks", "delete", "--state", "scheduled", "--all", "--json")
	if want := `{"deleted":2,"queue":"default","state":"scheduled"}` + "\n"; out != want {
		t.Errorf("delete --all --json = %q, want %q", out, want)
	}
	if out := mustRun(t, url, "", "tasks", "list", "--state", "pending"); !strings.HasPrefix(out, pending[0]+"\tAAPL\tpending\t\n") {
		t.Errorf("pending after deletes = %q, want AAPL left alone", out)
	}
	out = mustRun(t, url, "", "tasks", "delete", "--state", "pending", "--all")
	if out != "deleted 1 pending tasks in queue default\n" {
		t.Errorf("delete --all = %q", out)
	}
}

func TestTasksCancel(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	up := newUpstream()
	testServer(t, url, up, "default")
	slow := ids(mustRun(t, url, "", "enqueue", "SLOW"))[0]
	other := ids(mustRun(t, url, "", "enqueue", "--queue", "low", "GOOG"))[0] // no server reads low

	select {
	case id := <-up.started:
		if id != slow {
			t.Fatalf("started %s, want %s", id, slow)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SLOW did not start within 10s")
	}
	if out := mustRun(t, url, "", "tasks", "list", "--state", "active"); out != slow+"\tSLOW\tactive\t\n" {
		t.Errorf("list active = %q", out)
	}

	r := run(t, url, "", "tasks", "cancel", "--json", slow, other, "nope")
	wantCode(t, r, 1, "cancel an active, a pending and an unknown task")
	want := strings.Join([]string{
		`{"id":"` + slow + `","symbol":"SLOW","queue":"default","state":"active","action":"cancel sent","ok":true}`,
		`{"id":"` + other + `","symbol":"GOOG","queue":"low","state":"pending","action":"cancel sent","ok":false,"error":"task ` + other + ` is pending in queue low, not active: not cancelled"}`,
		`{"id":"nope","action":"cancel sent","ok":false,"error":"task nope: no such task in any queue"}`,
	}, "\n") + "\n"
	if r.stdout != want {
		t.Errorf("cancel --json =\n%s\nwant\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "2 of 3 tasks not cancelled: "+other+", nope") {
		t.Errorf("stderr = %q", r.stderr)
	}
	select {
	case id := <-up.cancelled:
		if id != slow {
			t.Errorf("cancelled %s, want %s", id, slow)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled within 10s")
	}
}

func TestPauseQueue(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	if out := mustRun(t, url, "", "pause", "low"); out != "paused queue low (it holds no tasks yet)\n" {
		t.Errorf("pause = %q", out)
	}
	if out := mustRun(t, url, "", "pause", "--json", "low"); out != `{"queue":"low","paused":true,"changed":false}`+"\n" {
		t.Errorf("pause again --json = %q", out)
	}
	low := mustRun(t, url, "", "enqueue", "--queue", "low", "GOOG", "MSFT")
	def := mustRun(t, url, "", "enqueue", "IBM")
	testServer(t, url, newUpstream(), "default", "low")

	if out := mustRun(t, url, def, "wait", "--tasks", "-", "--timeout", "20s"); out != "1 task done: 1 completed, 0 archived\n" {
		t.Errorf("wait for default = %q", out)
	}
	r := run(t, url, low, "wait", "--tasks", "-", "--timeout", "1s")
	wantCode(t, r, 1, "wait for the paused queue")
	r = wantWaiting(t, r, "producer: waiting up to 1s for 2 tasks in queue low")
	wantStderrLine(t, r, "still outstanding: 2 of 2 tasks: low (pending 2)")

	if out := mustRun(t, url, "", "unpause", "--json", "low"); out != `{"queue":"low","paused":false,"changed":true}`+"\n" {
		t.Errorf("unpause --json = %q", out)
	}
	if out := mustRun(t, url, low, "wait", "--tasks", "-", "--timeout", "20s"); out != "2 tasks done: 2 completed, 0 archived\n" {
		t.Errorf("wait after unpause = %q", out)
	}
	if out := mustRun(t, url, "", "unpause", "low"); out != "queue low was not paused\n" {
		t.Errorf("unpause again = %q", out)
	}
	if out := mustRun(t, url, "", "pause", "low"); out != "paused queue low\n" {
		t.Errorf("pause an existing queue = %q", out)
	}
}

func TestWaitTasks(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	text := mustRun(t, url, "", "enqueue", "GOOG", "MSFT")
	asJSON := mustRun(t, url, "", "enqueue", "--json", "--queue", "low", "--in", "1h", "IBM")
	gone := ids(mustRun(t, url, "", "enqueue", "AAPL"))[0]
	in := asynq.NewInspector(testenv.RedisClientOpt(t, url))
	defer in.Close()
	if err := in.DeleteTask("default", gone); err != nil {
		t.Fatal(err)
	}

	r := run(t, url, text+"\n"+asJSON, "wait", "--tasks", "-", "--timeout", "300ms")
	wantCode(t, r, 1, "wait for pending and scheduled tasks")
	r = wantWaiting(t, r, "producer: waiting up to 300ms for 3 tasks in queues default, low")
	wantStderrLine(t, r, "timed out; still outstanding: 3 of 3 tasks: default (pending 2), low (scheduled 1); ", "IBM (scheduled in low)")
	if r.stdout != "" {
		t.Errorf("stdout on timeout = %q, want nothing", r.stdout)
	}

	testServer(t, url, newUpstream(), "default")
	list := text + gone + "\tAAPL\tdefault\n" + text // repeats count once
	out := mustRun(t, url, list, "wait", "--tasks", "-", "--timeout", "20s")
	want := "3 tasks done: 2 completed, 0 archived, 1 not found (deleted before wait looked, or never enqueued in this Redis; first: " + gone + " AAPL in default)\n"
	if out != want {
		t.Errorf("wait = %q, want %q", out, want)
	}
	if out := mustRun(t, url, "", "wait", "--tasks", "/dev/null"); out != "0 tasks done: 0 completed, 0 archived\n" {
		t.Errorf("wait for an empty list = %q", out)
	}

	tests := []struct {
		stdin string
		args  []string
		want  string
	}{
		{"id\tGOOG\n", []string{"--tasks", "-"}, "line 1: want ID<TAB>SYMBOL<TAB>QUEUE"},
		{text + "{\"id\":1}\n", []string{"--tasks", "-"}, "line 3: not a JSON task object"},
		{"{\"id\":\"x\"}\n", []string{"--tasks", "-"}, "line 1: want a task id and a queue"},
		{"", []string{"--tasks", "/nonexistent/tasks.txt"}, "/nonexistent/tasks.txt"},
		{text, []string{"--tasks", "-", "--queue", "default"}, "--tasks and --queue cannot be used together"},
	}
	for _, tt := range tests {
		r := run(t, url, tt.stdin, append([]string{"wait"}, tt.args...)...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", tt.args, r.code, r.stderr)
		}
		wantStderrLine(t, r, tt.want)
	}
}

func TestWaitTasksRedisDown(t *testing.T) {
	t.Parallel()
	r := run(t, "redis://127.0.0.1:1/1", "x\tGOOG\tdefault\n", "wait", "--tasks", "-", "--timeout", "5s")
	wantCode(t, r, 1, "wait with redis down")
	wantStderrLine(t, r, "connection refused")
}
