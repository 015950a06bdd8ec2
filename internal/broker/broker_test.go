package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tickerq/tickerq/internal/testenv"
)

func TestWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    Settings
		want []string // substrings, one per expected warning, in order
	}{
		{"safe", Settings{"0", "noeviction", "yes", ""}, nil},
		{"safe with snapshots too", Settings{"1gb", "noeviction", "yes", "3600 1"}, nil},
		{"evicting with a limit", Settings{"1073741824", "allkeys-lru", "yes", ""}, []string{"when maxmemory is reached"}},
		{"evicting policy, no limit yet", Settings{"0", "volatile-lru", "yes", ""}, []string{"as soon as a maxmemory limit is set"}},
		{"no persistence", Settings{"0", "noeviction", "no", ""}, []string{"persists nothing"}},
		{"snapshots only", Settings{"0", "noeviction", "no", "3600 1 300 100"}, []string{"RDB snapshots only"}},
		{"both", Settings{"100mb", "allkeys-random", "no", ""}, []string{"evicted", "persists nothing"}},
	} {
		got := tc.s.Warnings()
		if len(got) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, sub := range tc.want {
			if !strings.Contains(got[i], sub) {
				t.Errorf("%s: warning %q lacks %q", tc.name, got[i], sub)
			}
		}
	}
}

func TestReadFromRealRedis(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	s, err := Read(context.Background(), rdb)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxMemoryPolicy == "" || (s.AppendOnly != "yes" && s.AppendOnly != "no") {
		t.Fatalf("settings %+v look unread", s)
	}
}
