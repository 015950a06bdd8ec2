package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OpenTelemetry collector's OTLP/HTTP traces endpoint
// (POST /v1/traces, protobuf, gzip or not) that keeps what it is sent.
type otlpReceiver struct {
	url  string
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
	bad  []string // requests it could not take, to fail the test with
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	fail := func(code int, why string) {
		r.mu.Lock()
		r.bad = append(r.bad, why)
		r.mu.Unlock()
		http.Error(w, why, code)
	}
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		fail(http.StatusNotFound, req.Method+" "+req.URL.Path)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail(http.StatusUnsupportedMediaType, "content type "+ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			fail(http.StatusBadRequest, "gzip: "+err.Error())
			return
		}
		defer gz.Close()
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		fail(http.StatusBadRequest, "read: "+err.Error())
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		fail(http.StatusBadRequest, "decode: "+err.Error())
		return
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, &msg)
	r.mu.Unlock()
	out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// requests returns how many export requests arrived and the reasons of
// those refused.
func (r *otlpReceiver) requests() (n int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs), append([]string(nil), r.bad...)
}

// span is one received span, flattened.
type span struct {
	Service  string            `json:"service"`
	Trace    string            `json:"trace_id"`
	ID       string            `json:"span_id"`
	Parent   string            `json:"parent_span_id,omitempty"`
	Name     string            `json:"name"`
	Kind     string            `json:"kind"`
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	Status   string            `json:"status,omitempty"`
	Attrs    map[string]string `json:"attributes"`
	Links    []spanRef         `json:"links,omitempty"`
	Resource map[string]string `json:"-"`
	// values are every attribute value the span carries anywhere: its
	// own, its events', its links' and its resource's.
	values []string
}

// spanRef names a span: a link's target.
type spanRef struct {
	Trace string `json:"trace_id"`
	ID    string `json:"span_id"`
}

func (s *span) Duration() time.Duration { return s.End.Sub(s.Start) }

// spans flattens everything received so far.
func (r *otlpReceiver) spans() []*span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*span
	for _, req := range r.reqs {
		for _, rs := range req.GetResourceSpans() {
			res := attrMap(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, ps := range ss.GetSpans() {
					s := &span{
						Service:  res["service.name"],
						Trace:    hex.EncodeToString(ps.GetTraceId()),
						ID:       hex.EncodeToString(ps.GetSpanId()),
						Name:     ps.GetName(),
						Kind:     ps.GetKind().String(),
						Start:    time.Unix(0, int64(ps.GetStartTimeUnixNano())),
						End:      time.Unix(0, int64(ps.GetEndTimeUnixNano())),
						Attrs:    attrMap(ps.GetAttributes()),
						Resource: res,
					}
					if len(ps.GetParentSpanId()) > 0 && !bytes.Equal(ps.GetParentSpanId(), make([]byte, 8)) {
						s.Parent = hex.EncodeToString(ps.GetParentSpanId())
					}
					if ps.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
						s.Status = "error: " + ps.GetStatus().GetMessage()
					}
					s.values = append(s.values, ps.GetStatus().GetMessage())
					for _, v := range res {
						s.values = append(s.values, v)
					}
					for _, v := range s.Attrs {
						s.values = append(s.values, v)
					}
					for _, ev := range ps.GetEvents() {
						s.values = append(s.values, ev.GetName())
						for _, v := range attrMap(ev.GetAttributes()) {
							s.values = append(s.values, v)
						}
					}
					for _, l := range ps.GetLinks() {
						s.Links = append(s.Links, spanRef{Trace: hex.EncodeToString(l.GetTraceId()), ID: hex.EncodeToString(l.GetSpanId())})
						for _, v := range attrMap(l.GetAttributes()) {
							s.values = append(s.values, v)
						}
					}
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// attrMap renders attributes as strings (arrays and maps in their proto
// text form: enough to search them for a secret).
func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case nil:
		return ""
	default:
		return v.String()
	}
}
