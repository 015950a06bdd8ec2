package config

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/hibiken/asynq"
)

var lookupEnv = os.LookupEnv

// Redacted is what a secret is replaced with in logs and errors.
const Redacted = "[REDACTED]"

// Redactor replaces secrets in text that may reach a log line or a stored
// task error: an API key and the passwords of URLs, each as given and in its
// URL-encoded forms. It is the one place that redacts; the zero value and a
// nil *Redactor redact nothing. It is safe for concurrent use.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor returns a Redactor of apiKey and of the userinfo passwords
// (and password query parameters) of urls.
func NewRedactor(apiKey string, urls ...string) *Redactor {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s, url.QueryEscape(s), url.PathEscape(s))
	}
	add(apiKey)
	for _, raw := range urls {
		for _, pw := range urlPasswords(raw) {
			add(pw)
		}
	}
	if len(secrets) == 0 {
		return &Redactor{}
	}
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	secrets = slices.Compact(secrets)
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, Redacted)
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// Redact returns s with every secret replaced by Redacted.
func (r *Redactor) Redact(s string) string {
	if r == nil || r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// Error returns err unchanged when its text holds no secret, else an error
// with the redacted text that still unwraps to err, so errors.Is and
// errors.As see the same chain.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := r.Redact(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// urlPasswords returns the password of raw's userinfo, decoded and as
// written, and the values of a password query parameter (a DATABASE_URL may
// carry one).
func urlPasswords(raw string) []string {
	var out []string
	// As written, found even when raw does not parse (the parser's error
	// quotes it): url.Parse decodes, and re-encoding need not give the same
	// text back.
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		authority, _, _ := strings.Cut(rest, "/")
		if i := strings.LastIndex(authority, "@"); i >= 0 {
			if _, pw, ok := strings.Cut(authority[:i], ":"); ok {
				out = append(out, pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					out = append(out, dec)
				}
			}
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	if pw, ok := u.User.Password(); ok {
		out = append(out, pw)
	}
	return append(out, u.Query()["password"]...)
}

// RedactURL returns a URL for a log line or an error: its password (in the
// userinfo or a password query parameter) replaced by Redacted, through the
// same Redactor as every other secret. A string that is not a URL (a
// keyword DSN, say) is hidden whole, as it may hold a secret.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(not a URL, hidden)"
	}
	return NewRedactor("", s).Redact(s)
}

// ParseRedisURL parses a REDIS_URL value with asynq.ParseRedisURI. Its error
// names source (the variable or flag) and never shows the password, which
// the parser's own message may quote.
func ParseRedisURL(source, raw string) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		msg := NewRedactor("", raw).Redact(strings.ReplaceAll(err.Error(), raw, RedactURL(raw)))
		return nil, fmt.Errorf("%w: %s %q: %s", ErrInvalid, source, RedactURL(raw), msg)
	}
	return opt, nil
}
