package broker

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tickerq/tickerq/internal/logging"
)

// WatchInterval is how often a running worker pings Redis to notice an
// outage; pingTimeout bounds one ping (go-redis retries inside it).
const (
	WatchInterval = time.Second
	pingTimeout   = 3 * time.Second
)

// Watch pings rdb every interval until ctx ends and says, in one line
// each, when Redis stops answering and when it answers again, recording
// the outage in o. go-redis's own messages (one per failed dial) are left
// at debug, and during the outage asynq's (several a second) go there too
// (logging.Outage), so that these two lines tell the story.
func Watch(ctx context.Context, rdb redis.UniversalClient, interval time.Duration, o *logging.Outage, log zerolog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := rdb.Ping(pctx).Err()
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if o.Down(time.Now()) {
				log.Error().Str("service", "redis").Str("error", err.Error()).
					Msg("redis: not reachable: no job runs until it answers again; asynq's errors meanwhile are logged at debug")
			}
		default:
			if lasted, muted, ended := o.Up(time.Now()); ended {
				log.Info().Str("service", "redis").Dur("down_ms", lasted).Int("asynq_lines_at_debug", muted).
					Msgf("redis: reachable again after %s", lasted.Round(100*time.Millisecond))
			}
		}
	}
}
