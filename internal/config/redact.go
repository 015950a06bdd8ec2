package config

import (
	"net/url"
	"os"
)

var lookupEnv = os.LookupEnv

// RedactURL replaces the password of a URL with "xxxxx". A string that is
// not a URL (a keyword DSN, say) is hidden whole, as it may hold a secret.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(not a URL, hidden)"
	}
	return u.Redacted()
}
