package queue

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestEnqueueEach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	symbols := append(symbolsN(50), "BAD$", "S00001") // one failure, one repeat
	var mu sync.Mutex
	var seen []string
	res, err := EnqueueEach(t.Context(), b.client, symbols, nil, 4, func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Symbol)
	})
	if err == nil {
		t.Fatal("EnqueueEach: no error for BAD$")
	}
	if len(res) != len(symbols) {
		t.Fatalf("%d results for %d symbols", len(res), len(symbols))
	}
	// each sees every symbol once, whatever its outcome.
	slices.Sort(seen)
	want := slices.Sorted(slices.Values(symbols))
	if !slices.Equal(seen, want) {
		t.Errorf("each saw %d symbols %v, want %d %v", len(seen), seen, len(want), want)
	}
}

func TestUnservedWarning(t *testing.T) {
	t.Parallel()
	worker := func(status string, queues ...string) *asynq.ServerInfo {
		s := &asynq.ServerInfo{Status: status, Queues: map[string]int{}, Started: time.Now()}
		for _, q := range queues {
			s.Queues[q] = 1
		}
		return s
	}
	tests := []struct {
		name    string
		servers []*asynq.ServerInfo
		queue   string
		want    string // substring; "" means no warning
	}{
		{"served", []*asynq.ServerInfo{worker("active", "critical", "default")}, "default", ""},
		{"served by the second", []*asynq.ServerInfo{worker("active", "low"), worker("active", "reports")}, "reports", ""},
		{"no servers", nil, "default", "no worker is running: the tasks wait in queue default"},
		{"only stopped servers", []*asynq.ServerInfo{worker("stopped", "default")}, "default", "no worker is running"},
		{"other queues", []*asynq.ServerInfo{worker("active", "low", "default"), worker("active", "critical")}, "nosuch",
			"no running worker serves queue nosuch (2 running serve critical, default, low)"},
		{"stopped server of the queue", []*asynq.ServerInfo{worker("stopped", "nosuch"), worker("active", "default")}, "nosuch",
			"no running worker serves queue nosuch (1 running serve default)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnservedWarning(tt.servers, tt.queue)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("UnservedWarning = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestUnservedWarningLiveServer checks the warning against what a running
// asynq server really registers in Redis.
func TestUnservedWarningLiveServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := asynq.NewServer(b.redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"critical": 1}, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	var servers []*asynq.ServerInfo
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if servers, err = b.inspector.Servers(); err != nil {
			t.Fatal(err)
		}
		if len(servers) > 0 {
			break
		}
	}
	if got := UnservedWarning(servers, "critical"); got != "" {
		t.Errorf("queue served by the running server: warning %q", got)
	}
	if got := UnservedWarning(servers, "default"); !strings.Contains(got, "serve critical") {
		t.Errorf("queue not served: warning %q, want one naming critical", got)
	}
}
