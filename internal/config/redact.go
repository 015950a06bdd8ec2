package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/hibiken/asynq"
)

var lookupEnv = os.LookupEnv

// RedactURL replaces the password of a URL with "xxxxx". A string that is
// not a URL (a keyword DSN, say) is hidden whole, as it may hold a secret.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(not a URL, hidden)"
	}
	return u.Redacted()
}

// ParseRedisURL parses a REDIS_URL value with asynq.ParseRedisURI. Its error
// names source (the variable or flag) and never shows the password, which
// the parser's own message may quote.
func ParseRedisURL(source, raw string) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), raw, RedactURL(raw))
		return nil, fmt.Errorf("%w: %s %q: %s", ErrInvalid, source, RedactURL(raw), msg)
	}
	return opt, nil
}
