package ui

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tickerq/tickerq/tasks"
)

// resultTimeLayout shows when a quote was taken, always in UTC.
const resultTimeLayout = "15:04:05Z07:00"

// formatPayload shows a quote-fetch payload as its symbol, "GOOG". Other
// task types, and payloads that do not parse, are shown raw.
func formatPayload(taskType string, payload []byte) string {
	if taskType == tasks.TypeQuoteFetch {
		if p, err := tasks.ParseQuoteFetchPayload(payload); err == nil {
			return p.Symbol
		}
	}
	return raw(payload)
}

// formatResult shows a quote-fetch result as "173.25 USD @ 14:30:00Z": the
// exact price text, then the time of the quote in UTC. Other results are
// shown raw. asynqmon passes an empty taskType on its task-detail page, so
// a result is also read as a quote fetch's when the type is unknown; only a
// result with a symbol, a price and a quote time counts as one.
func formatResult(taskType string, result []byte) string {
	if taskType == tasks.TypeQuoteFetch || taskType == "" {
		if s, ok := quoteResult(result); ok {
			return s
		}
	}
	return raw(result)
}

func quoteResult(result []byte) (string, bool) {
	var r tasks.QuoteFetchResult
	if err := json.Unmarshal(result, &r); err != nil || r.Symbol == "" || r.Price == "" || r.QuotedAt.IsZero() {
		return "", false
	}
	s := fmt.Sprintf("%s USD @ %s", r.Price, r.QuotedAt.UTC().Format(resultTimeLayout))
	if r.Duplicate {
		s += " (duplicate delivery)"
	}
	return s, true
}

// raw shows bytes as text, or Go-quoted when they are not UTF-8.
func raw(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return fmt.Sprintf("%q", b)
}
