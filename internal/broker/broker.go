// Package broker checks the Redis server that asynq uses as its broker for
// settings under which tasks could be lost.
package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrConfigUnreadable is returned when the server refuses CONFIG GET (managed
// services often rename or disable it).
var ErrConfigUnreadable = errors.New("cannot read redis configuration")

// Settings are the server settings that decide whether tasks survive.
type Settings struct {
	MaxMemory       string // bytes; "0" means no limit
	MaxMemoryPolicy string
	AppendOnly      string // "yes" or "no"
	Save            string // RDB snapshot schedule; "" means none
}

// Read fetches the settings with CONFIG GET.
func Read(ctx context.Context, rdb redis.UniversalClient) (Settings, error) {
	var s Settings
	for key, dst := range map[string]*string{
		"maxmemory":        &s.MaxMemory,
		"maxmemory-policy": &s.MaxMemoryPolicy,
		"appendonly":       &s.AppendOnly,
		"save":             &s.Save,
	} {
		vals, err := rdb.ConfigGet(ctx, key).Result()
		if err != nil {
			return Settings{}, fmt.Errorf("%w: CONFIG GET %s: %w", ErrConfigUnreadable, key, err)
		}
		v, ok := vals[key]
		if !ok {
			return Settings{}, fmt.Errorf("%w: CONFIG GET %s: no value", ErrConfigUnreadable, key)
		}
		*dst = v
	}
	return s, nil
}

// Warnings says, in words for the operator, how tasks could be lost under s:
// evicted when Redis runs out of memory, or gone after a restart.
func (s Settings) Warnings() []string {
	var w []string
	if s.MaxMemoryPolicy != "noeviction" {
		limit := "when maxmemory is reached"
		if s.MaxMemory == "0" {
			limit = "as soon as a maxmemory limit is set"
		}
		w = append(w, fmt.Sprintf("redis maxmemory-policy is %q: tasks can be evicted %s; set maxmemory-policy noeviction", s.MaxMemoryPolicy, limit))
	}
	if s.AppendOnly != "yes" && strings.TrimSpace(s.Save) == "" {
		w = append(w, "redis persists nothing (appendonly no, no save schedule): every queued task is lost when redis restarts; enable appendonly yes")
	} else if s.AppendOnly != "yes" {
		w = append(w, fmt.Sprintf("redis persists by RDB snapshots only (save %q): tasks enqueued since the last snapshot are lost when redis restarts; enable appendonly yes", s.Save))
	}
	return w
}
