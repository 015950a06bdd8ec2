// Package logging builds tickerq's zerolog loggers from LOG_LEVEL and
// LOG_FORMAT, and adapts them to asynq's Logger interface.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// ErrInvalidConfig is returned for an unknown level or format.
var ErrInvalidConfig = errors.New("invalid logging configuration")

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("json", or "console" for people).
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	switch strings.ToLower(format) {
	case "", "json":
	case "console":
		// Colours only for a terminal, so a console log in a file stays plain.
		out := w
		if u, ok := w.(interface{ Unwrap() io.Writer }); ok {
			out = u.Unwrap()
		}
		f, isFile := out.(*os.File)
		noColor := !isFile || !isatty.IsTerminal(f.Fd())
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: noColor}
	default:
		return zerolog.Nop(), fmt.Errorf("%w: LOG_FORMAT %q: want json or console", ErrInvalidConfig, format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// ParseLevel parses a LOG_LEVEL value.
func ParseLevel(level string) (zerolog.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return zerolog.DebugLevel, nil
	case "", "info":
		return zerolog.InfoLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("%w: LOG_LEVEL %q: want debug, info, warn or error", ErrInvalidConfig, level)
}

// AsynqLevel maps a zerolog level to asynq's, so asynq only formats what we keep.
func AsynqLevel(l zerolog.Level) asynq.LogLevel {
	switch {
	case l <= zerolog.DebugLevel:
		return asynq.DebugLevel
	case l == zerolog.InfoLevel:
		return asynq.InfoLevel
	case l == zerolog.WarnLevel:
		return asynq.WarnLevel
	default:
		return asynq.ErrorLevel
	}
}

// Asynq adapts a zerolog.Logger to asynq.Logger.
type Asynq struct {
	L zerolog.Logger
	// Reported, if not nil, holds the tasks whose end the worker's job line
	// has logged: asynq's warning repeating it is left out (see Reported).
	Reported *Reported
	// Outage, if not nil, says when Redis is known to be down: asynq's
	// warnings and errors, which then repeat that several times a second,
	// are logged at debug (see Outage).
	Outage *Outage
}

var _ asynq.Logger = Asynq{}

// Debug implements asynq.Logger.
func (a Asynq) Debug(args ...any) { a.L.Debug().Msg(fmt.Sprint(args...)) }

// Info implements asynq.Logger.
func (a Asynq) Info(args ...any) { a.L.Info().Msg(fmt.Sprint(args...)) }

// Warn implements asynq.Logger.
func (a Asynq) Warn(args ...any) {
	msg := fmt.Sprint(args...)
	if a.Reported.repeats(msg) {
		return
	}
	a.L.WithLevel(a.level(zerolog.WarnLevel)).Msg(msg)
}

// Error implements asynq.Logger.
func (a Asynq) Error(args ...any) {
	a.L.WithLevel(a.level(zerolog.ErrorLevel)).Msg(fmt.Sprint(args...))
}

// level is the level of a line asynq logs at l: debug during an outage.
func (a Asynq) level(l zerolog.Level) zerolog.Level {
	if a.Outage.mutes() {
		return zerolog.DebugLevel
	}
	return l
}

// Fatal implements asynq.Logger: like asynq's default logger, it logs and
// exits with status 1.
func (a Asynq) Fatal(args ...any) { a.L.Fatal().Msg(fmt.Sprint(args...)) }

// Redis adapts a zerolog.Logger to go-redis's logger (redis.SetLogger), so
// its own messages, such as each failed dial, go to our log at Level
// instead of raw lines on stderr.
type Redis struct {
	L     zerolog.Logger
	Level zerolog.Level
}

// Printf implements go-redis's internal.Logging.
func (r Redis) Printf(_ context.Context, format string, v ...any) {
	r.L.WithLevel(r.Level).Str("component", "go-redis").Msgf(format, v...)
}
