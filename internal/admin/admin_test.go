package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestEndpoints(t *testing.T) {
	t.Parallel()
	var pgDown atomic.Bool
	checks := []Check{
		{Name: "redis", Fn: func(context.Context) error { return nil }},
		{Name: "postgres", Fn: func(context.Context) error {
			if pgDown.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m 1\n") })
	srv, err := Start("127.0.0.1:0", Handler(checks, metrics), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()

	for _, tc := range []struct {
		path     string
		down     bool
		wantCode int
		wantBody string
	}{
		{"/healthz", false, 200, "ok"},
		{"/readyz", false, 200, "ok"},
		{"/metrics", false, 200, "m 1"},
		{"/readyz", true, 503, "postgres: connection refused"},
		{"/healthz", true, 200, "ok"},
		{"/nope", false, 404, ""},
	} {
		pgDown.Store(tc.down)
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
			t.Errorf("GET %s (postgres down %v) = %d %q; want %d containing %q", tc.path, tc.down, resp.StatusCode, body, tc.wantCode, tc.wantBody)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
}

func TestStartRefusesBadAddress(t *testing.T) {
	t.Parallel()
	if _, err := Start("127.0.0.1:notaport", http.NotFoundHandler(), zerolog.Nop()); err == nil {
		t.Fatal("Start with a bad address succeeded")
	}
}

func TestStarter(t *testing.T) {
	t.Parallel()
	s := NewStarter()
	ready := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "full\n") })
	tests := []struct {
		name     string
		setup    func()
		path     string
		wantCode int
		wantBody string
	}{
		{name: "healthz while starting", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "readyz before any state", path: "/readyz", wantCode: 503, wantBody: "starting\n"},
		{name: "readyz tells the state", setup: func() { s.SetState("waiting for postgres (attempt 3)") },
			path: "/readyz", wantCode: 503, wantBody: "starting: waiting for postgres (attempt 3)\n"},
		{name: "metrics not yet", path: "/metrics", wantCode: 503, wantBody: "starting: waiting for postgres (attempt 3)\n"},
		{name: "ready hands over", setup: func() { s.Ready(ready) }, path: "/readyz", wantCode: 200, wantBody: "full\n"},
	}
	for _, tc := range tests { // in order: each step builds on the last
		if tc.setup != nil {
			tc.setup()
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
			t.Errorf("%s: GET %s = %d %q, want %d %q", tc.name, tc.path, rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
		}
	}
}
