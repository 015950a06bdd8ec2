package quotesim_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/quotesim"
)

func TestParseScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []quotesim.Step
		bad  bool
	}{
		{in: "", want: nil},
		{in: "500,429:1", want: []quotesim.Step{{Status: 500}, {Status: 429, RetryAfter: time.Second}}},
		{in: "200*2, 429:5", want: []quotesim.Step{{Status: 200}, {Status: 200}, {Status: 429, RetryAfter: 5 * time.Second}}},
		{in: "429:x", bad: true},
		{in: "99", bad: true},
		{in: "500*0", bad: true},
		{in: "429:-1", bad: true},
		{in: "abc", bad: true},
	} {
		got, err := quotesim.ParseScript(tc.in)
		if tc.bad {
			if !errors.Is(err, quotesim.ErrInvalidOptions) {
				t.Errorf("quotesim.ParseScript(%q) = %v, %v; want quotesim.ErrInvalidOptions", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("quotesim.ParseScript(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestScriptAndTicks: scripted answers come first, in order, with their
// Retry-After; then the server answers as usual, and every request is
// counted in its tick.
func TestScriptAndTicks(t *testing.T) {
	t.Parallel()
	steps, err := quotesim.ParseScript("500,200,429:3")
	if err != nil {
		t.Fatal(err)
	}
	s, err := quotesim.New(quotesim.Options{Script: steps})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		status     int
		retryAfter string
	}{{500, ""}, {200, ""}, {429, "3"}, {200, ""}} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, quotesim.Path+"?symbol=AAPL", nil))
		if rec.Code != want.status || rec.Header().Get("Retry-After") != want.retryAfter {
			t.Errorf("request %d: %d Retry-After %q; want %d %q", i+1, rec.Code, rec.Header().Get("Retry-After"), want.status, want.retryAfter)
		}
	}
	st := s.Stats()
	var ticked uint64
	for _, tk := range st.Ticks {
		ticked += tk.Requests
	}
	if ticked != 4 || st.BusiestSecond() != 4 || len(st.Scripted) != 2 {
		t.Errorf("ticks count %d requests, busiest second %d, %d scripted; want 4, 4, 2", ticked, st.BusiestSecond(), len(st.Scripted))
	}
}
