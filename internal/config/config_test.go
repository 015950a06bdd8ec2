package config

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParseQueues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // FormatQueues of the result; "" for an error
	}{
		{"critical=6,default=3,low=1", "critical=6,default=3,low=1"},
		{" default = 2 , low ", "default=2,low=1"},
		{"default", "default=1"},
		{"default=0", ""},
		{"default=x", ""},
		{"default=-1", ""},
		{"a=1,a=2", ""},
		{"", ""},
		{",,", ""},
		{"=3", ""},
		{"my queue=1", ""},
	} {
		q, err := ParseQueues(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseQueues(%q) = %v, %v; want ErrInvalid", tc.in, q, err)
			}
			continue
		}
		if err != nil || FormatQueues(q) != tc.want {
			t.Errorf("ParseQueues(%q) = %v, %v; want %s", tc.in, FormatQueues(q), err, tc.want)
		}
	}
}

func TestWorkerEnvironmentAndFlags(t *testing.T) {
	t.Setenv("WORKER_CONCURRENCY", "7")
	t.Setenv("WORKER_QUEUES", "default=1")
	t.Setenv("ADMIN_ADDR", "")
	t.Setenv("QUOTE_API_KEY", "sekrit")

	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	w := BindWorker(fs)
	if err := fs.Parse([]string{"--queues", "critical=2,default=1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if w.Concurrency != 7 || FormatQueues(w.Queues) != "critical=2,default=1" || w.AdminAddr != "" {
		t.Fatalf("got concurrency %d, queues %s, admin %q; want 7 from env, flag's queues, empty admin",
			w.Concurrency, FormatQueues(w.Queues), w.AdminAddr)
	}
	if got := w.QuoteAPIKey.String(); got != "***" {
		t.Fatalf("secret prints as %q", got)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:[REDACTED]@h:5432/db?sslmode=disable",
		"redis://:pw@127.0.0.1:6379/0":              "redis://:[REDACTED]@127.0.0.1:6379/0",
		"http://user:p%40ss%2Fw@api.example:8000/x": "http://user:[REDACTED]@api.example:8000/x",
		"postgres://u@h/db?password=s3cret&x=1":     "postgres://u@h/db?password=[REDACTED]&x=1",
		"http://127.0.0.1:8000":                     "http://127.0.0.1:8000",
		"host=h user=u password=pw":                 "(not a URL, hidden)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWorkerQuoteRateLimit(t *testing.T) {
	for _, tc := range []struct {
		env, flag, want string
		bad             bool
	}{
		{env: "", want: ""},
		{env: "50/s", want: "50/s"},
		{env: "50/s", flag: "10/m", want: "10/m"},
		{env: "50", bad: true},
		{env: "50/day", bad: true},
		{env: "0/s", bad: true},
	} {
		t.Setenv("QUOTE_RATE_LIMIT", tc.env)
		fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
		w := BindWorker(fs)
		var args []string
		if tc.flag != "" {
			args = []string{"--quote-rate-limit", tc.flag}
		}
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		err := w.Finish()
		switch {
		case tc.bad:
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "QUOTE_RATE_LIMIT") {
				t.Errorf("QUOTE_RATE_LIMIT=%q: Finish = %v; want ErrInvalid naming QUOTE_RATE_LIMIT", tc.env, err)
			}
		case err != nil || w.QuoteRateLimit.String() != tc.want:
			t.Errorf("QUOTE_RATE_LIMIT=%q --quote-rate-limit=%q: %q, %v; want %q", tc.env, tc.flag, w.QuoteRateLimit, err, tc.want)
		}
	}
}

// TestVarsAreTheWorkersDefaults holds the defaults --help shows (Vars) to
// what the worker uses when none of its variables is set.
func TestVarsAreTheWorkersDefaults(t *testing.T) {
	for _, name := range WorkerEnv {
		t.Setenv(name, "") // restored after the test
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	w := BindWorker(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	orWord := func(s, word string) string {
		if s == "" {
			return word
		}
		return s
	}
	got := map[string]string{
		EnvRedisURL:             w.RedisURL,
		EnvDatabaseURL:          w.DatabaseURL,
		EnvDBRole:               w.DBRole,
		EnvQuoteAPIURL:          w.QuoteAPIURL,
		EnvQuoteAPIKey:          orWord(string(w.QuoteAPIKey), "empty"),
		EnvQuoteRateLimit:       orWord(w.QuoteRateLimit.String(), "no limit"),
		EnvWorkerConcurrency:    strconv.Itoa(w.Concurrency),
		EnvWorkerQueues:         FormatQueues(w.Queues),
		EnvAdminAddr:            w.AdminAddr,
		EnvLogLevel:             w.LogLevel,
		EnvLogFormat:            w.LogFormat,
		EnvWorkerConnectTimeout: DefaultConnectTimeout, // read by worker/main.go
	}
	for _, name := range WorkerEnv {
		v, ok := LookupVar(name)
		if !ok {
			t.Errorf("%s is not in Vars", name)
			continue
		}
		if g, ok := got[name]; !ok || g != v.Default {
			t.Errorf("%s: the worker's default is %q, Vars says %q", name, g, v.Default)
		}
	}
}
