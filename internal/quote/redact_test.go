package quote_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/quote"
	"github.com/tickerq/tickerq/tasks"
)

// echoKey answers code with a body that quotes the X-Finnhub-Token it got,
// raw and URL-encoded, as some APIs do in their error messages.
func echoKey(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("X-Finnhub-Token")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"error":"invalid api key: %s (%s)"}`, k, url.QueryEscape(k))
	}
}

// TestUpstreamTextNeverShowsSecrets: whatever the API echoes, the errors
// of Quote (which the job log and the task's stored last error print) hold
// neither the key nor the URL's password, and keep their class.
func TestUpstreamTextNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	const key = "sk live/+key&7f3a9c" // a space, a slash, a plus: encoded forms differ
	const password = "pw+5ecret/x"
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		wantCode int
		want     tasks.Class
	}{
		{"401 echoing the key", echoKey(http.StatusUnauthorized), 401, tasks.Permanent},
		{"500 echoing the key", echoKey(http.StatusInternalServerError), 500, tasks.Transient},
		{"200 with the key as the price", func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, `{"c":%q,"t":1763719200}`, r.Header.Get("X-Finnhub-Token"))
		}, 0, tasks.Permanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newServer(t, tc.handler)
			u, _ := url.Parse(ts.URL)
			u.User = url.UserPassword("user", password)
			c := newClient(t, u.String(), quote.Config{APIKey: key})
			_, err := c.Quote(context.Background(), "GOOG")
			if err == nil {
				t.Fatal("Quote succeeded, want an error")
			}
			msg := err.Error()
			for _, secret := range []string{key, url.QueryEscape(key), url.PathEscape(key), password, url.QueryEscape(password)} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows secret %q", msg, secret)
				}
			}
			if !strings.Contains(msg, "[REDACTED]") {
				t.Errorf("error %q: want the echoed key shown as [REDACTED]", msg)
			}
			if got := tasks.Classify(err); got != tc.want {
				t.Errorf("Classify(%q) = %v, want %v", msg, got, tc.want)
			}
			var status *tasks.StatusError
			if tc.wantCode != 0 && (!errors.As(err, &status) || status.Code != tc.wantCode || strings.Contains(status.Body, "sk live")) {
				t.Errorf("error %q: want a *tasks.StatusError %d with a redacted body, got %+v", msg, tc.wantCode, status)
			}
		})
	}
}

// TestTransportErrorHidesURLPassword: a refused connection's url.Error
// quotes the request URL; its password does not show.
func TestTransportErrorHidesURLPassword(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://user:pw5ecret@127.0.0.1:1", quote.Config{APIKey: apiKey})
	_, err := c.Quote(context.Background(), "GOOG")
	if err == nil || strings.Contains(err.Error(), "pw5ecret") {
		t.Fatalf("Quote error = %v, want a refused connection without the password", err)
	}
	checkNoKey(t, err)
	if got := tasks.Classify(err); got != tasks.Transient {
		t.Errorf("Classify(%q) = %v, want transient", err, got)
	}
}

// TestNewHidesURLPassword: a rejected base URL is named without its
// password.
func TestNewHidesURLPassword(t *testing.T) {
	t.Parallel()
	_, err := quote.New(quote.Config{BaseURL: "ftp://user:pw5ecret@host"})
	if err == nil || strings.Contains(err.Error(), "pw5ecret") || !strings.Contains(err.Error(), "QUOTE_API_URL") {
		t.Fatalf("New(ftp://user:pw5ecret@host) error = %v, want one naming QUOTE_API_URL without the password", err)
	}
}
