// Package tracing switches OpenTelemetry tracing on for tickerq's programs,
// configured only by the standard OTEL_* environment variables, and off by
// default. While it is off nothing is installed: the global tracer provider
// stays OpenTelemetry's no-op one and the global propagator writes and reads
// no header, so instrumented code costs a no-op call a span (a few hundred
// nanoseconds a job, measured), and nothing is exported.
//
// It is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER is
// "otlp"; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it off.
// Spans go out over OTLP/HTTP (protocols http/protobuf and http/json; the
// collector's port 4318). The exporter reads the other OTEL_EXPORTER_OTLP_*
// variables itself (headers, timeout, TLS), the SDK reads
// OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*, and the resource reads
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of tickerq's own spans.
const Name = "github.com/tickerq/tickerq"

// The environment variables this package reads itself; the SDK and the
// exporter read the rest of the OTEL_* family.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvSampler        = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName    = "OTEL_SERVICE_NAME"
)

// ErrConfig is wrapped by every error about the OTEL_* settings: a usage
// error, exit code 2.
var ErrConfig = errors.New("invalid OpenTelemetry setting")

// Enabled reports whether getenv's environment asks for traces.
func Enabled(getenv func(string) string) bool {
	if b, _ := strconv.ParseBool(strings.TrimSpace(getenv(EnvSDKDisabled))); b {
		return false
	}
	switch strings.TrimSpace(getenv(EnvTracesExporter)) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv(EnvEndpoint) != "" || getenv(EnvTracesEndpoint) != ""
}

// Check validates the settings this package and the SDK would otherwise
// only log about, so that a typo fails the start instead of silently
// tracing everything (the SDK's fallback) or nothing. It checks nothing
// when tracing is off.
func Check(getenv func(string) string) error {
	if !Enabled(getenv) {
		return nil
	}
	switch e := strings.TrimSpace(getenv(EnvTracesExporter)); e {
	case "", "otlp":
	default:
		return fmt.Errorf("%w: %s=%q: want otlp or none", ErrConfig, EnvTracesExporter, e)
	}
	proto := getenv(EnvTracesProtocol)
	name := EnvTracesProtocol
	if proto == "" {
		proto, name = getenv(EnvProtocol), EnvProtocol
	}
	switch proto {
	case "", "http/protobuf", "http/json":
	default:
		return fmt.Errorf("%w: %s=%q: tickerq exports over OTLP/HTTP: want http/protobuf or http/json (a collector's port 4318)", ErrConfig, name, proto)
	}
	sampler := strings.TrimSpace(getenv(EnvSampler))
	switch sampler {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
	case "traceidratio", "parentbased_traceidratio":
		arg := strings.TrimSpace(getenv(EnvSamplerArg))
		if arg == "" {
			break // the SDK's documented default: a ratio of 1
		}
		if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
			return fmt.Errorf("%w: %s=%q: want a ratio from 0 to 1", ErrConfig, EnvSamplerArg, arg)
		}
	default:
		return fmt.Errorf("%w: %s=%q: want always_on, always_off, traceidratio or their parentbased_ forms", ErrConfig, EnvSampler, sampler)
	}
	return nil
}

// Options say how a program traces.
type Options struct {
	// Service names the service unless OTEL_SERVICE_NAME says otherwise.
	Service string
	// Log gets the line saying tracing is on and, unless AtExit is set,
	// the lines about spans that could not be exported: the first failure
	// at once, then at most one line each ReportEvery counting those since
	// the last, and what is left when the program stops.
	Log zerolog.Logger
	// AtExit, if set, gets instead one line when the program stops, if any
	// export failed: for a short-lived command, whose spans mostly leave
	// in its last flush.
	AtExit func(line string)
}

// ReportEvery is the least time between two lines of a running program
// about spans it could not export.
const ReportEvery = time.Minute

// Setup installs the global tracer provider and the W3C trace-context
// propagator when getenv's environment asks for traces. It returns a
// shutdown that flushes the spans still buffered and reports what could
// not be exported (Options); call it last, with a timeout. When tracing is
// off it installs nothing and shutdown does nothing. Export failures are
// reported, never returned.
func Setup(ctx context.Context, getenv func(string) string, opt Options) (shutdown func(context.Context), err error) {
	noop := func(context.Context) {}
	if err := Check(getenv); err != nil {
		return noop, err
	}
	if !Enabled(getenv) {
		return noop, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, fmt.Errorf("%w: OTLP exporter: %w", ErrConfig, err)
	}
	// Later options win: the default name, then what the environment says.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(opt.Service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return noop, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// The SDK hands every failed export (a batch of spans) to the global
	// error handler, and otherwise drops it.
	report := &exportReport{endpoint: endpoint(getenv), every: ReportEvery, log: opt.Log, atExit: opt.AtExit}
	otel.SetErrorHandler(report)
	opt.Log.Info().Str("service", serviceName(getenv, opt.Service)).Str("endpoint", report.endpoint).
		Msg("tracing: on, exporting spans over OTLP/HTTP")
	return func(ctx context.Context) {
		if err := tp.Shutdown(ctx); err != nil {
			report.flushFailed(err)
		}
		report.stop()
	}, nil
}

// exportReport is the OpenTelemetry error handler: it counts the exports
// that failed and says so (Options), with the endpoint without credentials
// and the last error. Its methods are safe for concurrent use.
type exportReport struct {
	endpoint string
	every    time.Duration
	log      zerolog.Logger
	atExit   func(string)

	mu       sync.Mutex
	failed   int         // failures not reported yet
	last     error       // the last of them
	lastLine time.Time   // when a line was last written; zero before the first
	timer    *time.Timer // armed while failures wait for the next line
	stopped  bool
}

// Handle implements otel.ErrorHandler.
func (r *exportReport) Handle(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed++
	r.last = err
	switch {
	case r.atExit != nil || r.stopped:
		// Said at stop (or already stopped: nothing runs after it).
	case r.lastLine.IsZero() || time.Since(r.lastLine) >= r.every:
		r.reportLocked()
	case r.timer == nil:
		r.timer = time.AfterFunc(time.Until(r.lastLine.Add(r.every)), r.onTimer)
	}
}

// flushFailed counts the final flush's failure. A flush that ran out of
// time says so beside the export error before it, which names the cause
// (a refused connection, a bad status) that the deadline would hide.
func (r *exportReport) flushFailed(err error) {
	r.mu.Lock()
	if r.last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		r.failed++
		r.last = fmt.Errorf("%w (and the last flush ran out of time: %w)", r.last, err)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.Handle(fmt.Errorf("last flush: %w", err))
}

// onTimer says what failed since the last line, when no failure came to
// say it after ReportEvery.
func (r *exportReport) onTimer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if !r.stopped && r.failed > 0 {
		r.reportLocked()
	}
}

// stop says what failed and was not said yet; later failures are not.
func (r *exportReport) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.failed == 0 {
		return
	}
	if r.atExit != nil {
		r.atExit(r.line())
		r.failed = 0
		return
	}
	r.reportLocked()
}

// line says in words what failed since the last line.
func (r *exportReport) line() string {
	if r.failed == 1 {
		return fmt.Sprintf("tracing: could not export spans to %s: %v", r.endpoint, r.last)
	}
	return fmt.Sprintf("tracing: %d exports of spans to %s failed, the last: %v", r.failed, r.endpoint, r.last)
}

// reportLocked logs what failed since the last line; r.mu is held.
func (r *exportReport) reportLocked() {
	ev := r.log.Warn().Int("failed_exports", r.failed).Str("endpoint", r.endpoint).Str("error", r.last.Error())
	if r.lastLine.IsZero() {
		ev.Msg("tracing: could not export spans (while exports fail, one line a minute at most counts them)")
	} else {
		exports := "exports"
		if r.failed == 1 {
			exports = "export"
		}
		ev.Msgf("tracing: %d %s of spans failed since the last line", r.failed, exports)
	}
	r.failed, r.lastLine = 0, time.Now()
}

// endpoint is where spans go, as the exporter reads it, for the start-up
// line: scheme, host and path, never credentials or a query.
func endpoint(getenv func(string) string) string {
	raw, suffix := getenv(EnvTracesEndpoint), ""
	if raw == "" {
		raw, suffix = getenv(EnvEndpoint), " (+ /v1/traces)"
	}
	if raw == "" {
		return "default (localhost:4318)"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable)"
	}
	return u.Scheme + "://" + u.Host + u.Path + suffix
}

// FlushTimeout bounds the flush of the spans still buffered when a
// program stops, so that a dead collector cannot hold up its exit.
const FlushTimeout = 5 * time.Second

// Start is Setup for a program's main: stop flushes the spans still
// buffered within FlushTimeout, even after ctx has ended (the spans of a
// run cut by SIGTERM are still worth sending), and reports what could not
// be exported. Defer stop at once: a short-lived command that exits
// without it loses its spans.
func Start(ctx context.Context, getenv func(string) string, opt Options) (stop func(), err error) {
	shutdown, err := Setup(ctx, getenv, opt)
	if err != nil {
		return func() {}, err
	}
	return func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FlushTimeout)
		defer cancel()
		shutdown(fctx)
	}, nil
}

func serviceName(getenv func(string) string, def string) string {
	if s := getenv(EnvServiceName); s != "" {
		return s
	}
	return def
}

// Tracer is tickerq's tracer from the global provider: a no-op one unless
// Setup switched tracing on.
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Hook adds trace_id and span_id to every log line of an event given a
// context (zerolog's Event.Ctx) that carries a valid span context. Under a
// ratio sampler that includes spans not sampled: the ids still join the
// line to its task's other lines.
type Hook struct{}

// Run implements zerolog.Hook.
func (Hook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	ctx := e.GetCtx()
	if ctx == nil {
		return
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
	}
}
