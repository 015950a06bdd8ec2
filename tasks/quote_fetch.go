// Package tasks is the public face of tickerq's jobs: task type names,
// payloads, constructors and handlers. Any Go program can import it to
// enqueue the same jobs the producer CLI enqueues.
package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// TypeQuoteFetch is the asynq task type of a stock-quote fetch. Task types are
// wire format: queued tasks carry this string, so it is never renamed.
const TypeQuoteFetch = "quote:fetch"

// Defaults attached by NewQuoteFetchTask; options passed by the caller win.
const (
	// DefaultTimeout bounds one attempt: the quote call plus the database write.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxRetry is how many times a transiently failing job is retried
	// before it is archived.
	DefaultMaxRetry = 10
	// DefaultRetention keeps completed jobs and their results visible.
	DefaultRetention = 24 * time.Hour
	// MinMaxRetry is the least retry count that enqueue --max-retry and a
	// schedule's max_retry take: 0, no retries, so that the first counted
	// failure archives the task. A rate-limited attempt is still retried
	// after its delay, as it is not counted (see HeaderMaxRetry).
	MinMaxRetry = 0
	// MinTimeout is the least Timeout accepted: asynq keeps whole seconds, and
	// a zero timeout would mean asynq's default of 30 minutes.
	MinTimeout = time.Second
)

// ErrInvalidOption is returned for a task option outside the bounds above.
var ErrInvalidOption = errors.New("invalid task option")

// ErrInvalidSymbol is returned for a symbol that does not match the
// contract's pattern after upper-casing.
var ErrInvalidSymbol = errors.New("invalid symbol")

// SymbolRule says in words what NormalizeSymbol accepts, for the errors
// people read: the pattern `^[A-Z0-9][A-Z0-9.\-]{0,14}$` after upper-casing.
const SymbolRule = "want 1-15 characters of A-Z, 0-9, '.' and '-' (letters are upper-cased first), starting with a letter or digit"

// NormalizeSymbol upper-cases s and checks it against the symbol pattern
// `^[A-Z0-9][A-Z0-9.\-]{0,14}$` (e.g. GOOG, BRK.B, RDS-A).
func NormalizeSymbol(s string) (string, error) {
	sym := strings.ToUpper(s)
	if !validSymbol(sym) {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidSymbol, s, SymbolRule)
	}
	return sym, nil
}

// validSymbol reports whether s matches ^[A-Z0-9][A-Z0-9.\-]{0,14}$. Every
// job checks its payload's symbol, so this is a loop, not a regexp.
func validSymbol(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// QuoteFetchPayload is the JSON payload of a TypeQuoteFetch task.
type QuoteFetchPayload struct {
	Symbol string `json:"symbol"`
}

// NewQuoteFetchTask returns a task that fetches and stores the quote of
// symbol. The symbol is normalized and validated. The task carries
// DefaultTimeout, DefaultMaxRetry and DefaultRetention; opts are applied after
// them, so a caller's Timeout, MaxRetry or Retention takes precedence, but a
// Timeout under MinTimeout is refused. MaxRetry(0) means no retries.
//
// The caller's MaxRetry n (or DefaultMaxRetry) is carried in HeaderMaxRetry
// and enforced by the handler; asynq is given MaxRetry(n+1), which is what
// asynq's views of the task show. See HeaderMaxRetry for why.
func NewQuoteFetchTask(symbol string, opts ...asynq.Option) (*asynq.Task, error) {
	return newQuoteFetchTask(symbol, nil, opts)
}

func newQuoteFetchTask(symbol string, headers map[string]string, opts []asynq.Option) (*asynq.Task, error) {
	sym, err := NormalizeSymbol(symbol)
	if err != nil {
		return nil, err
	}
	maxRetry := DefaultMaxRetry
	for _, o := range opts {
		switch v := o.Value().(type) {
		case int:
			if o.Type() == asynq.MaxRetryOpt {
				maxRetry = v // the last one wins, as in asynq, which makes a negative 0
			}
		case time.Duration:
			if o.Type() == asynq.TimeoutOpt && v < MinTimeout {
				return nil, fmt.Errorf("%w: Timeout(%s): want at least %s", ErrInvalidOption, v, MinTimeout)
			}
		}
	}
	payload, err := json.Marshal(QuoteFetchPayload{Symbol: sym})
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	headers, asynqMaxRetry := maxRetryHeaders(headers, maxRetry)
	all := append([]asynq.Option{
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
	}, opts...)
	all = append(all, asynqMaxRetry) // after the caller's: see HeaderMaxRetry
	return asynq.NewTaskWithHeaders(TypeQuoteFetch, payload, headers, all...), nil
}

// ParseQuoteFetchPayload decodes and validates a TypeQuoteFetch payload.
func ParseQuoteFetchPayload(data []byte) (QuoteFetchPayload, error) {
	// Unknown fields are ignored so that a newer producer's payload still
	// runs on an older worker.
	var p QuoteFetchPayload
	if err := json.Unmarshal(data, &p); err != nil {
		return QuoteFetchPayload{}, fmt.Errorf("decode payload: %w", err)
	}
	sym, err := NormalizeSymbol(p.Symbol)
	if err != nil {
		return QuoteFetchPayload{}, err
	}
	p.Symbol = sym
	return p, nil
}
