package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/testenv"
)

// TestQueueDeleteMistyped is issue 14's case: a task enqueued to a
// mistyped queue keeps the queue in stats and makes wait time out, until
// queue delete --force removes it.
func TestQueueDeleteMistyped(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	startWorker(t, url, "default")
	mustRun(t, url, "", "enqueue", "--queue", "defualt", "IBM")

	if out := mustRun(t, url, "", "queue", "list"); out != "QUEUE    TASKS  PAUSED  WORKERS\ndefualt  1      no      0\n" {
		t.Errorf("queue list = %q", out)
	}
	var listed []struct {
		Queue   string `json:"queue"`
		Tasks   int    `json:"tasks"`
		Paused  bool   `json:"paused"`
		Workers int    `json:"workers"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, url, "", "queue", "ls", "--json")), &listed); err != nil ||
		len(listed) != 1 || listed[0].Queue != "defualt" || listed[0].Tasks != 1 || listed[0].Workers != 0 {
		t.Errorf("queue ls --json = %+v (%v), want defualt with 1 task and no worker", listed, err)
	}

	r := run(t, url, "", "queue", "delete", "defualt")
	wantCode(t, r, 1, "queue delete of a queue holding a task")
	wantStderrLine(t, r, "queue defualt holds 1 task (pending 1): not deleted; --force deletes the queue with its tasks")

	r = run(t, url, "", "queue", "delete", "nosuch")
	wantCode(t, r, 1, "queue delete of a queue that does not exist")
	wantStderrLine(t, r, "queue nosuch: no such queue (queues: defualt)")

	if out := mustRun(t, url, "", "queue", "rm", "defualt", "--force"); out != "deleted queue defualt and its 1 task (pending 1)\n" {
		t.Errorf("queue rm --force = %q", out)
	}
	if out := mustRun(t, url, "", "stats", "--json"); out != "[]\n" {
		t.Errorf("stats --json after the delete = %q, want []", out)
	}
	r = run(t, url, "", "wait", "--timeout", "5s")
	wantCode(t, r, 0, "wait once the mistyped queue is gone")
	if r.stdout != "0 queues done: there are none\n" {
		t.Errorf("wait: stdout %q", r.stdout)
	}

	// An empty queue goes without --force; a pause stays, and is said.
	mustRun(t, url, "", "enqueue", "GOOG")
	mustRun(t, url, "", "tasks", "delete", "--state", "pending", "--all")
	mustRun(t, url, "", "pause", "default")
	if out := mustRun(t, url, "", "queue", "delete", "default"); out != "deleted queue default; it stays paused (producer unpause default lifts that); a running worker still serves it, so a task enqueued to it brings it back\n" {
		t.Errorf("queue delete of an empty, paused queue = %q", out)
	}
}

func TestQueueUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"queue"}, "missing command: want queue list or queue delete"},
		{[]string{"queue", "delete"}, "want exactly one queue name, got 0 arguments"},
		{[]string{"queue", "delete", "a", "b"}, "want exactly one queue name, got 2 arguments"},
		{[]string{"queue", "delete", "a b"}, `queue "a b": want a non-empty name`},
		{[]string{"queue", "list", "x"}, "x"},
		{nil, "missing command: want enqueue, stats, wait, queue, tasks, pause, unpause, ui, schedule or sessions"},
	} {
		r := run(t, "redis://127.0.0.1:1/1", "", tt.args...)
		wantCode(t, r, 2, tt.want)
		wantStderrLine(t, r, tt.want)
	}
}

// exampleOutput is the first `e.g. "..."` of the --help of args, with its
// line breaks folded into spaces.
var exampleOutput = regexp.MustCompile(`e\.g\. "([^"]+)"`)

// TestHelpShowsRealOutput: each output line a --help shows, e.g. "...", is
// what the command prints.
func TestHelpShowsRealOutput(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	mustRun(t, url, "", "enqueue", "--queue", "low", "GOOG")
	mustRun(t, url, "", "enqueue", "--queue", "defualt", "IBM")
	for _, args := range [][]string{
		{"pause", "low"},
		{"unpause", "low"},
		{"wait", "--queue", "critical", "--queue", "default"},
		{"queue", "delete", "defualt", "--force"},
	} {
		help := mustRun(t, url, "", append(args[:1:1], "--help")...)
		if args[0] == "queue" {
			help = mustRun(t, url, "", "queue", "delete", "--help")
		}
		m := exampleOutput.FindStringSubmatch(help)
		if m == nil {
			t.Errorf("%s --help shows no output example", args[0])
			continue
		}
		want := strings.Join(strings.Fields(m[1]), " ")
		if got := strings.TrimSuffix(mustRun(t, url, "", args...), "\n"); got != want {
			t.Errorf("%q printed %q; its --help says it prints e.g. %q", args, got, want)
		}
	}
}
