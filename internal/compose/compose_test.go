package compose

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tickerq/tickerq/internal/config"
	"github.com/tickerq/tickerq/internal/testenv"
)

// repoRoot is the repository, seen from this package's directory.
var repoRoot = filepath.Join("..", "..")

// program is what one of the image's commands accepts, as far as a compose
// file can use it. TestProgramsMatchTheirHelp holds this table to the real
// binaries.
type program struct {
	env     []string          // every variable it reads: internal/config's lists
	flags   map[string]string // flag name -> type as --help prints it ("" for a bool)
	listen  *listen           // where it serves; nil when it serves nothing
	oneShot bool              // runs to completion, then exits
	// helpEnv are the commands whose --help "Environment:" paragraphs
	// together name env (producer's root documents what every subcommand
	// reads).
	helpEnv []string
}

// listen says how a program is told its listen address.
type listen struct {
	flag, env, def string
	emptyDisables  bool // the variable set but empty turns the server off
}

// dockerDefaultStopGrace is what Docker waits between SIGTERM and SIGKILL
// when stop_grace_period is unset.
const dockerDefaultStopGrace = 10 * time.Second

var programs = map[string]program{
	"worker": {
		env: config.WorkerEnv,
		flags: map[string]string{
			"concurrency": "string", "queues": "string", "shutdown-timeout": "duration",
			"admin-addr": "string", "quote-timeout": "duration",
		},
		listen:  &listen{flag: "admin-addr", env: config.EnvAdminAddr, def: config.DefaultAdminAddr, emptyDisables: true},
		helpEnv: []string{"worker"},
	},
	"worker migrate": {
		env:     config.MigrateEnv,
		flags:   map[string]string{"grant-to": "string"},
		oneShot: true,
		helpEnv: []string{"worker migrate"},
	},
	"producer ui": {
		env:     config.UIEnv,
		flags:   map[string]string{"addr": "string", "read-only": "", "redis-url": "string"},
		listen:  &listen{flag: "addr", env: config.EnvUIAddr, def: config.DefaultUIAddr},
		helpEnv: []string{"producer", "producer ui"},
	},
	"quoteserver": {
		env: config.QuoteserverEnv,
		flags: map[string]string{
			"addr": "string", "latency": "duration", "error-rate": "float", "rps": "float",
			"unknown": "string", "api-key": "string", "seed": "uint",
		},
		listen:  &listen{flag: "addr", def: "127.0.0.1:8000"}, // the contract's default
		helpEnv: []string{"quoteserver"},
	},
}

// peerVars are the variables that tell a program where another service is.
// Their defaults point at loopback, which inside a container is the
// container itself, so a service whose program reads one must set it.
var peerVars = map[string]string{
	config.EnvRedisURL:    config.DefaultRedisURL,
	config.EnvDatabaseURL: config.DefaultDatabaseURL,
	config.EnvQuoteAPIURL: config.DefaultQuoteAPIURL,
}

// wantServices are the services people and the README name.
var wantServices = []struct{ name, program, image string }{
	{name: "redis", image: "redis"},
	{name: "postgres", image: "postgres"},
	{name: "migrate", program: "worker migrate"},
	{name: "worker", program: "worker"},
	{name: "quoteserver", program: "quoteserver"},
	{name: "ui", program: "producer ui"},
}

// imagePorts are the ports the third-party images serve on.
var imagePorts = map[string]string{"redis": "6379", "postgres": "5432"}

// schemePorts are the ports URLs without one mean.
var schemePorts = map[string]string{
	"redis": "6379", "rediss": "6379", "postgres": "5432", "postgresql": "5432", "http": "80", "https": "443",
}

// load parses a compose file with the Compose specification's loader, as
// `docker compose` does, but deterministically: interpolation sees no
// environment at all, so the file's own ${VAR:-default}s are what is
// checked, and relative paths resolve against the repository.
func load(t *testing.T, file string) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithName("tickerq-test"),
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil), // not cli.WithOsEnv, nor cli.WithDotEnv
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return project
}

// invocation is a service's command, understood.
type invocation struct {
	key   string            // "worker", "worker migrate", ...
	prog  program           //
	flags map[string]string // flags given, with their values
}

// parseCommand reads a service command of the tickerq image: a program, an
// optional subcommand, then flags of that command.
func parseCommand(cmd types.ShellCommand) (invocation, error) {
	if len(cmd) == 0 {
		return invocation{}, fmt.Errorf("no command: the image's default would run")
	}
	key := path.Base(cmd[0])
	rest := cmd[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		key += " " + rest[0]
		rest = rest[1:]
	}
	prog, ok := programs[key]
	if !ok {
		return invocation{}, fmt.Errorf("command %q: %q is no command of the image (known: %s)",
			[]string(cmd), key, strings.Join(slices.Sorted(maps.Keys(programs)), ", "))
	}
	inv := invocation{key: key, prog: prog, flags: map[string]string{}}
	for i := 0; i < len(rest); i++ {
		arg := rest[i]
		if !strings.HasPrefix(arg, "--") {
			return invocation{}, fmt.Errorf("command %q: unexpected argument %q", []string(cmd), arg)
		}
		name, value, hasValue := strings.Cut(arg[2:], "=")
		typ, known := prog.flags[name]
		if !known {
			return invocation{}, fmt.Errorf("command %q: %s has no flag --%s", []string(cmd), key, name)
		}
		if !hasValue && typ != "" {
			if i+1 == len(rest) {
				return invocation{}, fmt.Errorf("command %q: --%s needs a value", []string(cmd), name)
			}
			i++
			value = rest[i]
		}
		inv.flags[name] = value
	}
	return inv, nil
}

// check returns every way project differs from what the programs and the
// README need, one error per problem, in a stable order.
func check(project *types.Project) []error {
	var errs []error
	fail := func(service, format string, args ...any) {
		errs = append(errs, fmt.Errorf("service %s: %s", service, fmt.Sprintf(format, args...)))
	}

	for _, want := range wantServices {
		s, ok := project.Services[want.name]
		switch {
		case !ok:
			fail(want.name, "missing")
		case want.image != "" && imageRepo(s.Image) != want.image:
			fail(want.name, "image %q, want %s", s.Image, want.image)
		case want.program != "":
			if inv, err := parseCommand(s.Command); err == nil && inv.key != want.program {
				fail(want.name, "runs %s, want %s", inv.key, want.program)
			}
		}
	}

	names := slices.Sorted(maps.Keys(project.Services))
	for _, name := range names {
		s := project.Services[name]
		switch imageRepo(s.Image) {
		case "redis":
			checkRedis(s, fail)
		case "postgres":
			if !healthy(s) {
				fail(name, "no healthcheck: services that need Postgres cannot wait for it")
			}
		}
		if s.Build == nil && !namesProgram(s.Command) {
			continue // not a tickerq program
		}
		inv, err := parseCommand(s.Command)
		if err != nil {
			fail(name, "%v", err)
			continue
		}
		checkEnv(project, s, inv, fail)
		checkListen(s, inv, fail)
		if inv.prog.oneShot && s.Restart != "" && s.Restart != types.RestartPolicyNo && !strings.HasPrefix(s.Restart, types.RestartPolicyOnFailure) {
			fail(name, "%s is one-shot, but restart %q starts it again after it succeeds", inv.key, s.Restart)
		}
		if inv.key == "worker" {
			checkWorker(project, s, inv, fail)
		}
	}
	return errs
}

type failFunc func(service, format string, args ...any)

// checkRedis: asynq keeps every task in Redis, so Redis must persist them
// and must never evict one.
func checkRedis(s types.ServiceConfig, fail failFunc) {
	opts := map[string]string{}
	for i, arg := range s.Command {
		if strings.HasPrefix(arg, "--") && i+1 < len(s.Command) {
			opts[arg] = s.Command[i+1]
		}
	}
	if opts["--appendonly"] != "yes" {
		fail(s.Name, "command lacks --appendonly yes: tasks are lost when Redis restarts")
	}
	if opts["--maxmemory-policy"] != "noeviction" {
		fail(s.Name, "command lacks --maxmemory-policy noeviction: Redis may evict tasks")
	}
	if !healthy(s) {
		fail(s.Name, "no healthcheck: services that need Redis cannot wait for it")
	}
}

// checkEnv: the service sets only what its program reads, and everything
// the program needs to find its peers, pointing at services of this file.
func checkEnv(project *types.Project, s types.ServiceConfig, inv invocation, fail failFunc) {
	for _, name := range slices.Sorted(maps.Keys(s.Environment)) {
		if !slices.Contains(inv.prog.env, name) {
			fail(s.Name, "sets %s, which %s does not read (it reads %s)", name, inv.key, strings.Join(inv.prog.env, ", "))
		}
	}
	for _, name := range inv.prog.env {
		def, isPeer := peerVars[name]
		if !isPeer {
			continue
		}
		raw := envValue(s, name)
		if raw == "" {
			fail(s.Name, "%s is not set: %s would use its default %s, which inside a container is the container itself",
				name, inv.key, def)
			continue
		}
		checkPeerURL(project, s, name, raw, fail)
	}
}

// checkPeerURL: a peer URL parses, names a service of this file on the port
// that service serves, and the service waits for that peer.
func checkPeerURL(project *types.Project, s types.ServiceConfig, name, raw string, fail failFunc) {
	shown := config.RedactURL(raw)
	if name == config.EnvRedisURL {
		if _, err := config.ParseRedisURL(name, raw); err != nil {
			fail(s.Name, "%v", err)
			return
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		fail(s.Name, "%s %s: want a URL with a host", name, shown)
		return
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = schemePorts[u.Scheme]
	}
	peer, ok := project.Services[host]
	if !ok {
		fail(s.Name, "%s %s: host %q is no service of this file (services: %s)",
			name, shown, host, strings.Join(slices.Sorted(maps.Keys(project.Services)), ", "))
		return
	}
	if want, ok := imagePorts[imageRepo(peer.Image)]; ok && port != want {
		fail(s.Name, "%s %s: port %s, but %s serves on %s", name, shown, port, host, want)
	}
	if inv, err := parseCommand(peer.Command); err == nil && inv.prog.listen != nil {
		addr, _ := listenAddr(peer, inv)
		if h, p, err := net.SplitHostPort(addr); err != nil || isLoopback(h) || p != port {
			fail(s.Name, "%s %s: %s listens on %q, which other containers cannot reach on port %s", name, shown, host, addr, port)
		}
	}
	if imageRepo(peer.Image) == "postgres" {
		checkPostgresLogin(s, name, u, peer, fail)
	}
	dep, ok := s.DependsOn[host]
	switch {
	case !ok:
		fail(s.Name, "depends_on lacks %s, which %s points at", host, name)
	case healthy(peer) && dep.Condition != types.ServiceConditionHealthy:
		fail(s.Name, "depends_on %s: condition %s, want %s", host, dep.Condition, types.ServiceConditionHealthy)
	}
}

// checkPostgresLogin: a DATABASE_URL logs in as the user the postgres
// service creates, with its password, to its database.
func checkPostgresLogin(s types.ServiceConfig, name string, u *url.URL, pg types.ServiceConfig, fail failFunc) {
	user := cmpOr(envValue(pg, "POSTGRES_USER"), "postgres")
	db := cmpOr(envValue(pg, "POSTGRES_DB"), user)
	if got := u.User.Username(); got != user {
		fail(s.Name, "%s logs in as %q, but %s creates %q", name, got, pg.Name, user)
	}
	if pw, _ := u.User.Password(); envValue(pg, "POSTGRES_HOST_AUTH_METHOD") != "trust" && pw != envValue(pg, "POSTGRES_PASSWORD") {
		fail(s.Name, "%s: the password is not %s's POSTGRES_PASSWORD", name, pg.Name)
	}
	if got := strings.TrimPrefix(u.Path, "/"); got != db {
		fail(s.Name, "%s names database %q, but %s creates %q", name, got, pg.Name, db)
	}
}

// checkListen: a published port reaches the program's server, which must
// then listen beyond the container's loopback.
func checkListen(s types.ServiceConfig, inv invocation, fail failFunc) {
	if len(s.Ports) == 0 {
		return
	}
	if inv.prog.listen == nil {
		fail(s.Name, "publishes ports, but %s serves nothing", inv.key)
		return
	}
	addr, set := listenAddr(s, inv)
	host, port, err := net.SplitHostPort(addr)
	switch {
	case !set && addr == "":
		fail(s.Name, "publishes ports, but %s's server is disabled (%s is empty)", inv.key, inv.prog.listen.env)
		return
	case err != nil:
		fail(s.Name, "listen address %q: %v", addr, err)
		return
	case isLoopback(host):
		fail(s.Name, "publishes ports, but %s listens on %s, the container's own loopback", inv.key, addr)
	}
	for _, p := range s.Ports {
		if strconv.Itoa(int(p.Target)) != port {
			fail(s.Name, "publishes container port %d, but %s listens on %s", p.Target, inv.key, addr)
		}
	}
}

// checkWorker: workers wait for the schema, can be scaled, and get time to
// drain in-flight jobs when they are stopped.
func checkWorker(project *types.Project, s types.ServiceConfig, inv invocation, fail failFunc) {
	migrated := false
	for dep, d := range s.DependsOn {
		if m, err := parseCommand(project.Services[dep].Command); err == nil && m.key == "worker migrate" &&
			d.Condition == types.ServiceConditionCompletedSuccessfully {
			migrated = true
		}
	}
	if !migrated {
		fail(s.Name, "depends_on lacks a `worker migrate` service with condition %s", types.ServiceConditionCompletedSuccessfully)
	}

	timeout := config.DefaultShutdownTimeout
	if v, ok := inv.flags["shutdown-timeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fail(s.Name, "--shutdown-timeout %q: %v", v, err)
			return
		}
		timeout = d
	}
	grace, what := dockerDefaultStopGrace, " (Docker's default)"
	if s.StopGracePeriod != nil {
		grace, what = time.Duration(*s.StopGracePeriod), ""
	}
	if grace <= timeout {
		fail(s.Name, "stop_grace_period %s%s must be longer than --shutdown-timeout %s, or Docker kills in-flight jobs",
			grace, what, timeout)
	}

	if s.ContainerName != "" {
		fail(s.Name, "container_name %q: a fixed name stops --scale %s=N", s.ContainerName, s.Name)
	}
	for _, p := range s.Ports {
		if p.Published != "" {
			fail(s.Name, "fixed host port %s: a second replica could not bind it", p.Published)
		}
	}
}

// listenAddr is where a serving program listens: its flag, else its
// variable, else its default. set reports whether the flag or the variable
// decided.
func listenAddr(s types.ServiceConfig, inv invocation) (addr string, set bool) {
	l := inv.prog.listen
	if v, ok := inv.flags[l.flag]; ok {
		return v, true
	}
	if l.env != "" {
		if v, ok := s.Environment[l.env]; ok && v != nil && (*v != "" || l.emptyDisables) {
			return *v, true
		}
	}
	return l.def, false
}

func envValue(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func healthy(s types.ServiceConfig) bool {
	hc := s.HealthCheck
	return hc != nil && !hc.Disable && len(hc.Test) > 0 && hc.Test[0] != "NONE"
}

func namesProgram(cmd types.ShellCommand) bool {
	if len(cmd) == 0 {
		return false
	}
	_, ok := programs[path.Base(cmd[0])]
	return ok
}

// imageRepo is "redis" for "redis:7" or "docker.io/library/redis:7@sha256:…".
func imageRepo(image string) string {
	image, _, _ = strings.Cut(image, "@")
	repo := path.Base(image)
	repo, _, _ = strings.Cut(repo, ":")
	return repo
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	project := load(t, filepath.Join(repoRoot, "docker-compose.yml"))
	for _, err := range check(project) {
		t.Error(err)
	}
}

// TestCheckCatches runs check on broken copies of docker-compose.yml.
func TestCheckCatches(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		old, new string // the first old becomes new
		want     []string
	}{
		{
			name: "worker no longer waits for migrate",
			old:  "      migrate:\n        condition: service_completed_successfully\n",
			want: []string{"service worker: depends_on lacks a `worker migrate` service with condition service_completed_successfully"},
		},
		{
			name: "REDIS_URL renamed REDIS_ADDR on worker",
			old:  "      REDIS_URL: redis://redis:6379/0", new: "      REDIS_ADDR: redis://redis:6379/0",
			want: []string{
				"service worker: sets REDIS_ADDR, which worker does not read",
				"service worker: REDIS_URL is not set: worker would use its default redis://127.0.0.1:6379/0",
			},
		},
		{
			name: "Redis may evict",
			old:  `, "--maxmemory-policy", "noeviction"`,
			want: []string{"service redis: command lacks --maxmemory-policy noeviction"},
		},
		{
			name: "Redis without AOF",
			old:  `"--appendonly", "yes"`, new: `"--appendonly", "no"`,
			want: []string{"service redis: command lacks --appendonly yes"},
		},
		{
			name: "grace period shorter than the shutdown timeout",
			old:  "stop_grace_period: 40s", new: "stop_grace_period: 20s",
			want: []string{"service worker: stop_grace_period 20s must be longer than --shutdown-timeout 30s"},
		},
		{
			name: "grace period left at Docker's default",
			old:  "    stop_grace_period: 40s\n",
			want: []string{"service worker: stop_grace_period 10s (Docker's default) must be longer than --shutdown-timeout 30s"},
		},
		{
			name: "shutdown timeout raised past the grace period",
			old:  `"--shutdown-timeout", "30s"`, new: `"--shutdown-timeout", "1m"`,
			want: []string{"service worker: stop_grace_period 40s must be longer than --shutdown-timeout 1m0s"},
		},
		{
			name: "worker with a fixed host port",
			old:  `"127.0.0.1::8081"`, new: `"127.0.0.1:8081:8081"`,
			want: []string{"service worker: fixed host port 8081"},
		},
		{
			name: "worker with a container name",
			old:  "    stop_grace_period: 40s\n", new: "    stop_grace_period: 40s\n    container_name: tickerq-worker\n",
			want: []string{`service worker: container_name "tickerq-worker"`},
		},
		{
			name: "migrate does not wait for a healthy Postgres",
			old:  "      postgres:\n        condition: service_healthy\n", new: "      postgres:\n        condition: service_started\n",
			want: []string{"service migrate: depends_on postgres: condition service_started, want service_healthy"},
		},
		{
			name: "ui does not wait for Redis",
			old:  "    depends_on:\n      redis:\n        condition: service_healthy\n    restart: unless-stopped\n\nvolumes:",
			new:  "    restart: unless-stopped\n\nvolumes:",
			want: []string{"service ui: depends_on lacks redis, which REDIS_URL points at"},
		},
		{
			name: "misspelt subcommand",
			old:  `["worker", "migrate"]`, new: `["worker", "migrat"]`,
			want: []string{`service migrate: command ["worker" "migrat"]: "worker migrat" is no command of the image`},
		},
		{
			name: "unknown flag",
			old:  `["worker", "--shutdown-timeout", "30s"]`, new: `["worker", "--shutdown", "30s"]`,
			want: []string{`service worker: command ["worker" "--shutdown" "30s"]: worker has no flag --shutdown`},
		},
		{
			name: "URL at a service that does not exist",
			old:  "redis://redis:6379/0", new: "redis://cache:6379/0",
			want: []string{`service worker: REDIS_URL redis://cache:6379/0: host "cache" is no service of this file`},
		},
		{
			name: "database password that Postgres does not know",
			old:  "postgres://tickerq:${POSTGRES_PASSWORD:-tickerq}@", new: "postgres://tickerq:wrong@",
			want: []string{"service migrate: DATABASE_URL: the password is not postgres's POSTGRES_PASSWORD"},
		},
		{
			name: "Postgres without healthcheck",
			old:  `      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "tickerq", "-d", "tickerq"]` + "\n",
			new:  "      disable: true\n",
			want: []string{"service postgres: no healthcheck"},
		},
		{
			name: "quoteserver on the container's loopback",
			old:  `["quoteserver", "--addr", "0.0.0.0:8000"]`, new: `["quoteserver"]`,
			want: []string{`service worker: QUOTE_API_URL http://quoteserver:8000: quoteserver listens on "127.0.0.1:8000"`},
		},
		{
			name: "ui publishes a port it does not listen on",
			old:  `"127.0.0.1:8080:8080"`, new: `"127.0.0.1:8080:9090"`,
			want: []string{"service ui: publishes container port 9090, but producer ui listens on 0.0.0.0:8080"},
		},
		{
			name: "migrate restarted after it succeeds",
			old:  `    restart: "no"`, new: "    restart: unless-stopped",
			want: []string{`service migrate: worker migrate is one-shot, but restart "unless-stopped" starts it again`},
		},
		{
			name: "service renamed",
			old:  "  ui:\n", new: "  web:\n",
			want: []string{"service ui: missing"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(string(orig), tc.old) {
				t.Fatalf("docker-compose.yml no longer contains %q: update this case", tc.old)
			}
			file := filepath.Join(t.TempDir(), "docker-compose.yml")
			if err := os.WriteFile(file, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			errs := check(load(t, file))
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			for _, want := range tc.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, want) }) {
					t.Errorf("no error containing %q; got:\n  %s", want, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

// TestProgramsMatchTheirHelp holds the programs table to the real binaries:
// each command exists, has the flags of the table with their types, serves
// on the default the table says, and documents exactly the environment
// internal/config says it reads.
func TestProgramsMatchTheirHelp(t *testing.T) {
	t.Parallel()
	help := testenv.HelpPrograms(t)
	envWord := regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b`)
	envParagraph := regexp.MustCompile(`(?s)Environment:.*?(?:\n\n|$)`)

	for _, key := range slices.Sorted(maps.Keys(programs)) {
		prog := programs[key]
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			out := help(t, key)
			if !regexp.MustCompile(`Usage:\n  ` + regexp.QuoteMeta(key) + `[ \n]`).MatchString(out) {
				t.Fatalf("%s --help shows no usage of %q: the command does not exist\n%s", key, key, out)
			}
			for name, typ := range prog.flags {
				m := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--` + regexp.QuoteMeta(name) + `(?: (\w+))?  .*$`).FindStringSubmatch(out)
				switch {
				case m == nil:
					t.Errorf("%s has no flag --%s", key, name)
				case m[1] != typ:
					t.Errorf("%s --%s is of type %q, the table says %q", key, name, m[1], typ)
				case prog.listen != nil && name == prog.listen.flag && !strings.Contains(m[0], listenDefault(prog.listen)):
					t.Errorf("%s --%s: the table's default %q is not the program's: %s", key, name, prog.listen.def, m[0])
				}
			}
			documented := map[string]bool{}
			for _, k := range prog.helpEnv {
				for _, w := range envWord.FindAllString(envParagraph.FindString(help(t, k)), -1) {
					documented[w] = true
				}
			}
			if got, want := slices.Sorted(maps.Keys(documented)), slices.Sorted(slices.Values(prog.env)); !slices.Equal(got, want) {
				t.Errorf("%s --help documents the environment %v; internal/config's list is %v", key, got, want)
			}
		})
	}
}

// listenDefault is how --help shows the default of l's flag: pflag's
// "(default "ADDR")", or config.FlagFromEnv's "(default ADDR, from VAR)"
// when a variable sets it.
func listenDefault(l *listen) string {
	if l.env != "" {
		return fmt.Sprintf("(default %s, from %s)", l.def, l.env)
	}
	return fmt.Sprintf("(default %q)", l.def)
}

// TestDockerfile checks the image builds every program the compose file
// runs, statically, with the Go of go.mod, and runs them as a non-root user
// with no fixed entrypoint.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	if v := string(goVersion[1]); !strings.Contains(text, "golang:"+v) && !strings.Contains(text, "GO_VERSION="+v) {
		t.Errorf("Dockerfile does not build with Go %s, the version of go.mod", v)
	}
	stages := regexp.MustCompile(`(?m)^FROM `).Split(text, -1)
	final := stages[len(stages)-1]
	var buildLine string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "RUN") && strings.Contains(line, "go build") {
			buildLine = line
		}
	}
	if !strings.Contains(text, "CGO_ENABLED=0") || !strings.Contains(buildLine, "-trimpath") {
		t.Errorf("the build is not static and trimmed (CGO_ENABLED=0, -trimpath): %q", buildLine)
	}
	for key := range programs {
		if prog := strings.Fields(key)[0]; !strings.Contains(buildLine, "./"+prog) {
			t.Errorf("Dockerfile does not build %s, which docker-compose.yml runs", prog)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final)
	if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0") {
		t.Errorf("the final stage does not run as a non-root USER: %v", user)
	}
	if m := regexp.MustCompile(`(?m)^ENTRYPOINT (.*)$`).FindStringSubmatch(final); m != nil && strings.TrimSpace(m[1]) != "[]" {
		t.Errorf("ENTRYPOINT %s is fixed to one program; the compose commands pick the program", m[1])
	}
}
