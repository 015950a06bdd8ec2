package config

import (
	"errors"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestRedactor(t *testing.T) {
	t.Parallel()
	const key = "k3y/+ with&"
	r := NewRedactor(key, "http://user:p%40ss@api.example", "redis://127.0.0.1:6379/0")
	for _, tc := range []struct{ in, want string }{
		{"invalid api key: " + key, "invalid api key: [REDACTED]"},
		{"token=" + url.QueryEscape(key), "token=[REDACTED]"},
		{"path /" + url.PathEscape(key), "path /[REDACTED]"},
		{"Get \"http://user:p%40ss@api.example/q\"", "Get \"http://user:[REDACTED]@api.example/q\""},
		{"decoded p@ss", "decoded [REDACTED]"},
		{"nothing secret", "nothing secret"},
	} {
		if got := r.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var nilR *Redactor
	if got := nilR.Redact(key); got != key {
		t.Errorf("nil Redactor changed %q to %q", key, got)
	}
	if got := NewRedactor("").Redact("text"); got != "text" {
		t.Errorf("empty Redactor changed text to %q", got)
	}
}

func TestRedactorError(t *testing.T) {
	t.Parallel()
	r := NewRedactor("s3cret")
	plain := errors.New("no secret here")
	if got := r.Error(plain); got != plain {
		t.Errorf("Error(%v) = %v, want the same error", plain, got)
	}
	leaky := &fs.PathError{Op: "open", Path: "/s3cret", Err: fs.ErrNotExist}
	got := r.Error(leaky)
	var pe *fs.PathError
	if strings.Contains(got.Error(), "s3cret") || !errors.Is(got, fs.ErrNotExist) || !errors.As(got, &pe) {
		t.Errorf("Error(%v) = %q: want the secret redacted and the chain kept", leaky, got)
	}
	if r.Error(nil) != nil {
		t.Error("Error(nil) is not nil")
	}
}

// TestFinishRejectsEverySetting: each bad setting is an ErrInvalid naming
// it, found by Finish alone, before any connection is tried, and never
// showing a secret.
func TestFinishRejectsEverySetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{env: map[string]string{EnvQuoteAPIURL: "ftp://x"}, want: EnvQuoteAPIURL},
		{env: map[string]string{EnvQuoteAPIURL: "http://"}, want: EnvQuoteAPIURL},
		{env: map[string]string{EnvQuoteAPIURL: "http://user:s3cret@h:99999"}, want: EnvQuoteAPIURL},
		{env: map[string]string{EnvQuoteAPIURL: "::"}, want: EnvQuoteAPIURL},
		{env: map[string]string{EnvQuoteAPIKey: "s3cret\n"}, want: EnvQuoteAPIKey},
		{env: map[string]string{EnvQuoteAPIKey: "s3\x01cret"}, want: EnvQuoteAPIKey},
		{env: map[string]string{EnvQuoteRateLimit: "fast"}, want: EnvQuoteRateLimit},
		{env: map[string]string{EnvDBRole: "Writer"}, want: EnvDBRole},
		{env: map[string]string{EnvWorkerQueues: "default=x"}, want: "queues"},
		{env: map[string]string{EnvWorkerConcurrency: "0"}, want: "concurrency"},
		{env: map[string]string{EnvAdminAddr: "nohostport"}, want: EnvAdminAddr},
		{env: map[string]string{EnvAdminAddr: "127.0.0.1:http"}, want: EnvAdminAddr},
		{env: map[string]string{EnvDatabaseURL: "postgres://u:s3cret@h:1/x?pool_max_conns=abc"}, want: EnvDatabaseURL},
		{env: map[string]string{EnvRedisURL: "redis://:s3cret@127.0.0.1:99x/0"}, want: EnvRedisURL},
		{env: map[string]string{EnvLogLevel: "loud"}, want: EnvLogLevel},
		{env: map[string]string{EnvLogFormat: "xml"}, want: EnvLogFormat},
		{args: []string{"--shutdown-timeout", "0s"}, want: "shutdown-timeout"},
		{args: []string{"--quote-timeout", "-1s"}, want: "quote-timeout"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
		w := BindWorker(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := w.Finish()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v %v: Finish = %v; want an error naming %s without the secret", tc.env, tc.args, err, tc.want)
		}
		for k := range tc.env {
			t.Setenv(k, "") // cli.Env takes empty as unset
		}
	}
}
