package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Quote is one validated quote: what a QuoteFetcher returns and a PriceStore
// writes. Decimal fields hold the exact JSON number text, so nothing rounds a
// price on its way to the database; optional ones are empty when the API sent
// null or left them out.
type Quote struct {
	Symbol    string      `json:"symbol"`
	Price     json.Number `json:"price"`
	Change    json.Number `json:"change,omitempty"`
	ChangePct json.Number `json:"change_pct,omitempty"`
	DayHigh   json.Number `json:"day_high,omitempty"`
	DayLow    json.Number `json:"day_low,omitempty"`
	DayOpen   json.Number `json:"day_open,omitempty"`
	PrevClose json.Number `json:"prev_close,omitempty"`
	QuotedAt  time.Time   `json:"quoted_at"`
}

// Errors a QuoteFetcher or a PriceStore returns (wrapped, with context) so
// that Classify can tell what a failure means. They only say what happened;
// Classify decides what asynq does about it.
var (
	// ErrUnknownSymbol: the quote API does not know the symbol (404, or
	// Finnhub's answer of c == 0 and t == 0). Permanent.
	ErrUnknownSymbol = errors.New("unknown symbol")
	// ErrInvalidQuote: a 200 answer whose body is not a valid quote.
	// Permanent.
	ErrInvalidQuote = errors.New("invalid quote")
	// ErrRejected: the store refused the quote for its data (for Postgres,
	// SQLSTATE classes 22 and 23, e.g. a CHECK violation), so retrying
	// cannot help. Permanent.
	ErrRejected = errors.New("rejected by the database")
)

// StatusError is a non-200 answer from the quote API other than 404 (which
// is ErrUnknownSymbol): 429 is rate limited, other 4xx permanent, 5xx
// transient.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// RetryAfter is the parsed Retry-After header; zero when absent or invalid.
	RetryAfter time.Duration
	// Body is the start of the answer's body, for the error message.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("quote api answered %d %s", e.Code, http.StatusText(e.Code))
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}
