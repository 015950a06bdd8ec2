package schedule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// debounce is how long the reloader waits after a file event for more:
// editors write a file in several steps.
const debounce = 200 * time.Millisecond

// Reloader reloads the schedule file on request (SIGHUP) and when the file
// or a symbols file it references changes.
type Reloader struct {
	Path    string // the schedule file
	Markets MarketLookup
	Log     zerolog.Logger
}

// Run watches the directories of current's files until ctx is done. Each
// reload that passes Load is sent on out; one that fails is logged and the
// running schedule stays. A receive on hup asks for a reload.
func (rl *Reloader) Run(ctx context.Context, current *Config, hup <-chan os.Signal, out chan<- *Config) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch schedule files: %w", err)
	}
	defer w.Close()
	// Directories, not files: editors and deploy tools replace a file by
	// renaming another over it, which ends a watch on the file itself.
	watched := map[string]bool{}
	var files map[string]bool
	track := func(cfg *Config) {
		files = map[string]bool{cfg.Path: true}
		for _, f := range cfg.Files {
			files[filepath.Clean(f)] = true
		}
		for f := range files {
			dir := filepath.Dir(f)
			if watched[dir] {
				continue
			}
			if err := w.Add(dir); err != nil {
				rl.Log.Warn().Err(err).Str("dir", dir).Msg("schedule: cannot watch; reload with SIGHUP")
				continue
			}
			watched[dir] = true
		}
	}
	track(current)

	var settle <-chan time.Time
	reload := func(why string) {
		cfg, err := Load(rl.Path, rl.Markets)
		if err != nil {
			rl.Log.Error().Err(err).Str("trigger", why).Msg("schedule: reload refused; keeping the running schedule")
			return
		}
		track(cfg)
		rl.Log.Info().Str("trigger", why).Int("schedules", len(cfg.Entries)).Msg("schedule file reloaded")
		select {
		case out <- cfg:
		case <-ctx.Done():
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			reload("sighup")
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if files[filepath.Clean(ev.Name)] && !ev.Has(fsnotify.Chmod) {
				settle = time.After(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			rl.Log.Warn().Err(err).Msg("schedule: file watch")
		case <-settle:
			settle = nil
			reload("file changed")
		}
	}
}
