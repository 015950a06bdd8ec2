// Package ui serves the asynqmon web UI over tickerq's queues.
//
// New builds one http.Handler: asynqmon (github.com/hibiken/asynqmon, whose
// compiled UI ships inside its Go module) rooted at "/", with formatters that
// show a quote-fetch task as its symbol and its result as "173.25 USD @
// 14:30:00Z", optional HTTP basic auth, an optional read-only mode, a guard
// against cross-site requests, and fixes for how asynqmon serves its files.
package ui

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid web UI configuration")

// Realm is the basic-auth realm the UI asks browsers for.
const Realm = "tickerq"

// Config configures the UI.
type Config struct {
	// Redis is where the queues live. Required; one of asynq's own
	// RedisClientOpt, RedisFailoverClientOpt or RedisClusterClientOpt, as
	// asynq.ParseRedisURI returns.
	Redis asynq.RedisConnOpt
	// User and Password turn on HTTP basic auth for every page, asset and
	// API call. Set both or neither.
	User, Password string
	// ReadOnly lets people look but not change anything: asynqmon hides its
	// buttons, and every request but GET and HEAD is refused with 405.
	ReadOnly bool
	// Loopback says the UI listens on a loopback address only. Without
	// basic auth it then answers only requests addressed to localhost or a
	// loopback IP, which shuts out DNS-rebinding pages.
	Loopback bool
}

// Handler is the web UI. Close it to release its Redis connections.
type Handler struct {
	mon  *asynqmon.HTTPHandler
	next http.Handler
}

// New returns the web UI for cfg. It does not contact Redis.
func New(cfg Config) (*Handler, error) {
	if cfg.Redis == nil {
		return nil, fmt.Errorf("%w: no Redis connection", ErrInvalidConfig)
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, fmt.Errorf("%w: basic auth needs both a user and a password", ErrInvalidConfig)
	}
	if strings.Contains(cfg.User, ":") {
		// Basic auth sends "user:password"; a colon in the user can never match.
		return nil, fmt.Errorf("%w: the basic-auth user must not contain ':'", ErrInvalidConfig)
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         "/",
		RedisConnOpt:     cfg.Redis,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(formatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(formatResult),
		ReadOnly:         cfg.ReadOnly,
	})

	// Built inside out. A request meets: the security headers, basic auth,
	// the cross-origin check, the read-only check, the asset fixes, asynqmon.
	var h http.Handler = fixAssets(mon)
	if cfg.ReadOnly {
		h = readOnly(h)
	}
	h = http.NewCrossOriginProtection().Handler(h)
	if cfg.User != "" {
		h = basicAuth(cfg.User, cfg.Password, h)
	} else if cfg.Loopback {
		h = loopbackHostOnly(h)
	}
	return &Handler{mon: mon, next: securityHeaders(h)}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.next.ServeHTTP(w, r) }

// Close closes the UI's Redis connections.
func (h *Handler) Close() error { return h.mon.Close() }

// securityHeaders stops browsers from sniffing types and from framing the
// UI in another site's page (whose clicks would then delete tasks).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// basicAuth answers 401 unless the request carries user and password. Both
// are compared as SHA-256 digests in constant time, so neither the time
// taken nor an early exit tells how much of a guess was right.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
			http.Error(w, "401 unauthorized: this UI needs a user and password", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readOnly refuses every method but GET and HEAD, whatever the path. asynqmon's
// own read-only mode guards only the API routes it knows.
// loopbackHostOnly refuses requests whose Host is not localhost or a
// loopback address. Without a password, a UI on loopback is protected only
// by being unreachable from elsewhere; a web page could still reach it by
// pointing a name of its own at 127.0.0.1 (DNS rebinding), and its requests
// would look same-origin. Such requests carry that name as Host.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsLoopbackHost(r.Host) {
			http.Error(w, "421 misdirected request: this web UI answers only to localhost; set UI_USER and UI_PASSWORD to serve other names", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// IsLoopbackHost reports whether host, with or without a port, is
// localhost or a loopback IP: a Host header, or a listen address.
func IsLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed: the web UI is read-only", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// assetTypes are the content types of the files asynqmon embeds, by
// extension. asynqmon sniffs them with http.DetectContentType, which calls
// an SVG "text/xml" or "text/plain" (so an <img> will not show it) and JSON
// "text/plain".
var assetTypes = map[string]string{
	".css":  "text/css; charset=utf-8",
	".ico":  "image/x-icon",
	".js":   "text/javascript; charset=utf-8",
	".json": "application/json",
	".map":  "application/json",
	".png":  "image/png",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
}

// fixAssets mends how asynqmon serves its files. It labels its answers: API
// answers as JSON, embedded files by extension, and the single-page app's
// index as HTML; errors keep the text/plain that http.Error sets. And it
// redirects /index.html to "/", because asynqmon serves that file raw, its
// template markers unrendered, so the page would load no script.
func fixAssets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/index.html" {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return
		}
		next.ServeHTTP(&typedWriter{ResponseWriter: w, path: r.URL.Path}, r)
	})
}

// typedWriter sets the Content-Type just before the header is written.
type typedWriter struct {
	http.ResponseWriter
	path        string
	wroteHeader bool
}

func (w *typedWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.setType(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *typedWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *typedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *typedWriter) setType(code int) {
	h := w.Header()
	set := h.Get("Content-Type") != ""
	switch {
	case strings.HasPrefix(w.path, "/api/"):
		if !set {
			h.Set("Content-Type", "application/json")
		}
	case !set:
		// asynqmon sets no type only when it renders index.html, which it
		// does for "/" and for every path that is not an embedded file.
		h.Set("Content-Type", "text/html; charset=utf-8")
	case code == http.StatusOK:
		// An embedded file, to which asynqmon added a sniffed type.
		if t, ok := assetTypes[path.Ext(w.path)]; ok {
			h.Set("Content-Type", t)
		}
	}
}
