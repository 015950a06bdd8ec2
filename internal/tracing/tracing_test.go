package tracing

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnabled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{EnvEndpoint: "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, true},
		{"exporter otlp", map[string]string{EnvTracesExporter: "otlp"}, true},
		{"exporter none wins", map[string]string{EnvEndpoint: "http://x:4318", EnvTracesExporter: "none"}, false},
		{"sdk disabled wins", map[string]string{EnvEndpoint: "http://x:4318", EnvSDKDisabled: "true"}, false},
		{"service name alone", map[string]string{EnvServiceName: "w"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Enabled(env(tc.env)); got != tc.want {
				t.Errorf("Enabled = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	on := func(kv ...string) map[string]string {
		m := map[string]string{EnvEndpoint: "http://127.0.0.1:4318"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // "" = valid
	}{
		{"defaults", on(), ""},
		{"off ignores junk", map[string]string{EnvSampler: "bogus"}, ""},
		{"ratio", on(EnvSampler, "parentbased_traceidratio", EnvSamplerArg, "0.25"), ""},
		{"json", on(EnvProtocol, "http/json"), ""},
		{"grpc refused", on(EnvProtocol, "grpc"), "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\""},
		{"traces protocol wins", on(EnvProtocol, "grpc", EnvTracesProtocol, "http/protobuf"), ""},
		{"bad sampler", on(EnvSampler, "always"), "OTEL_TRACES_SAMPLER=\"always\""},
		{"bad ratio", on(EnvSampler, "traceidratio", EnvSamplerArg, "2"), "want a ratio from 0 to 1"},
		{"unparsable ratio", on(EnvSampler, "traceidratio", EnvSamplerArg, "half"), "OTEL_TRACES_SAMPLER_ARG"},
		{"other exporter", map[string]string{EnvTracesExporter: "zipkin", EnvEndpoint: "http://x:4318"}, "want otlp or none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check(env(tc.env))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrConfig)):
				t.Fatalf("Check = %v, want an ErrConfig containing %q", err, tc.wantErr)
			}
		})
	}
}

// Off means off: Setup installs nothing, so spans are not recorded and no
// trace context is carried.
func TestSetupOff(t *testing.T) {
	shutdown, err := Setup(context.Background(), env(nil), Options{Service: "test", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	_, span := Tracer().Start(context.Background(), "x")
	defer span.End()
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("span recorded with tracing off: %+v", span.SpanContext())
	}
}

func TestHookAddsIDs(t *testing.T) {
	t.Parallel()
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(Hook{})
	log.Info().Ctx(ctx).Msg("with span")
	log.Info().Ctx(context.Background()).Msg("without")
	log.Info().Msg("no ctx")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.Contains(lines[0], `"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"`) {
		t.Errorf("line with span: %s", lines[0])
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, "trace_id") {
			t.Errorf("line without span has ids: %s", l)
		}
	}
}

func TestEndpointHidesCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvEndpoint: "https://user:s3cret@collector:4318/?token=x"}, "https://collector:4318/ (+ /v1/traces)"},
		{map[string]string{EnvTracesEndpoint: "http://c:4318/v1/traces"}, "http://c:4318/v1/traces"},
		{map[string]string{EnvTracesExporter: "otlp"}, "default (localhost:4318)"},
	}
	for _, tc := range tests {
		if got := endpoint(env(tc.env)); got != tc.want {
			t.Errorf("endpoint(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}
