package config_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/testenv"
)

// TestHelpShowsEnvironment runs every program's --help in an empty
// environment: its "Environment:" paragraph lists exactly the variables the
// program reads (this package's lists), in their order, one a line, each
// with its default and meaning from Vars; and every flag whose default
// comes from a variable shows that variable's default.
func TestHelpShowsEnvironment(t *testing.T) {
	t.Parallel()
	runHelp := testenv.HelpPrograms(t)

	paragraph := regexp.MustCompile(`(?m)^Environment:\n((?:  .*\n?)*)`)
	line := regexp.MustCompile(`^  ([A-Z][A-Z0-9_]*)  +(.+)$`)
	fromEnv := regexp.MustCompile(`\(default (.*?), from ([A-Z][A-Z0-9_]*)\)`)
	for _, tc := range []struct {
		cmd  string
		env  []string
		flag map[string]string // flags whose default comes from a variable
	}{
		{"worker", config.WorkerEnv, map[string]string{
			"concurrency": config.EnvWorkerConcurrency, "queues": config.EnvWorkerQueues, "admin-addr": config.EnvAdminAddr,
			"quote-rate-limit": config.EnvQuoteRateLimit, "connect-timeout": config.EnvWorkerConnectTimeout,
		}},
		{"worker migrate", config.MigrateEnv, nil},
		{"producer", config.ProducerEnv, map[string]string{"redis-url": config.EnvRedisURL}},
		{"producer ui", config.UIEnv, map[string]string{
			"addr": config.EnvUIAddr, "read-only": config.EnvUIReadOnly, "redis-url": config.EnvRedisURL,
		}},
		{"quoteserver", config.QuoteserverEnv, map[string]string{"api-key": config.EnvQuoteAPIKey}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			t.Parallel()
			help := runHelp(t, tc.cmd)
			m := paragraph.FindStringSubmatch(help)
			if m == nil {
				t.Fatalf("%s --help has no Environment: paragraph\n%s", tc.cmd, help)
			}
			var names []string
			for _, l := range strings.Split(strings.TrimRight(m[1], "\n"), "\n") {
				lm := line.FindStringSubmatch(l)
				if lm == nil {
					t.Errorf("%s --help: environment line %q is not \"  NAME  default  meaning\"", tc.cmd, l)
					continue
				}
				names = append(names, lm[1])
				v, ok := config.LookupVar(lm[1])
				if !ok {
					t.Errorf("%s --help names %s, which config.Vars does not hold", tc.cmd, lm[1])
					continue
				}
				if want := v.Default + "  "; !strings.HasPrefix(lm[2], want) || !strings.HasSuffix(lm[2], "  "+v.Meaning) {
					t.Errorf("%s --help: %q, want default %q then meaning %q", tc.cmd, l, v.Default, v.Meaning)
				}
			}
			if !slices.Equal(names, tc.env) {
				t.Errorf("%s --help lists %v; the program reads %v", tc.cmd, names, tc.env)
			}

			for flag, env := range tc.flag {
				fl := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--` + regexp.QuoteMeta(flag) + `\b.*$`).FindString(help)
				v, _ := config.LookupVar(env)
				if want := "(default " + v.Default + ", from " + env + ")"; !strings.HasSuffix(fl, want) {
					t.Errorf("%s --help: flag line %q does not end %q", tc.cmd, fl, want)
				}
			}
			for _, fm := range fromEnv.FindAllStringSubmatch(help, -1) {
				if v, ok := config.LookupVar(fm[2]); !ok || v.Default != fm[1] {
					t.Errorf("%s --help: %q, but config.Vars has %s's default as %q", tc.cmd, fm[0], fm[2], v.Default)
				}
			}
		})
	}
}
