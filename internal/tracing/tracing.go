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

// Setup installs the global tracer provider and the W3C trace-context
// propagator when getenv's environment asks for traces, naming the
// service defaultService unless OTEL_SERVICE_NAME says otherwise. It
// returns a shutdown that flushes the spans still buffered; call it last,
// with a timeout. When tracing is off it installs nothing and shutdown does
// nothing. Export failures are logged through log, never returned.
func Setup(ctx context.Context, getenv func(string) string, defaultService string, log zerolog.Logger) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
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
		resource.WithAttributes(semconv.ServiceName(defaultService)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return noop, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn().Str("error", err.Error()).Msg("tracing: could not export spans")
	}))
	log.Info().Str("service", serviceName(getenv, defaultService)).Str("endpoint", endpoint(getenv)).
		Msg("tracing: on, exporting spans over OTLP/HTTP")
	return tp.Shutdown, nil
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
// run cut by SIGTERM are still worth sending), and logs a failure. Defer
// stop at once: a short-lived command that exits without it loses its
// spans.
func Start(ctx context.Context, getenv func(string) string, defaultService string, log zerolog.Logger) (stop func(), err error) {
	shutdown, err := Setup(ctx, getenv, defaultService, log)
	if err != nil {
		return func() {}, err
	}
	return func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FlushTimeout)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn().Err(err).Msg("tracing: could not flush the last spans")
		}
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
