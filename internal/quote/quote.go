// Package quote is the client of the Finnhub-compatible quote API:
// GET {base}/api/v1/quote?symbol=SYM answering
// {"c":173.25,"d":1.2,"dp":0.7,"h":174.1,"l":171.5,"o":172.0,"pc":172.05,"t":1763719200}.
//
// It returns tasks.Quote values and the errors package tasks defines, so that
// tasks.Classify decides what a failure means. Prices are kept as the exact
// decimal text of the JSON numbers, so nothing is rounded on the way from
// JSON to the database's numeric columns.
package quote

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tickerq/tickerq/tasks"
)

// ErrBodyTooLarge: the answer's body exceeds MaxBodyBytes. It is always
// wrapped together with tasks.ErrInvalidQuote.
var ErrBodyTooLarge = errors.New("body too large")

// wireQuote is the API's answer with every field kept raw, so that types are
// checked strictly instead of coerced.
type wireQuote struct {
	C, D, DP, H, L, O, PC, T json.RawMessage
}

// decodeWire decodes the body's fields by their exact names: encoding/json
// alone would also take "C" or "Pc" for c and pc.
func decodeWire(body []byte) (wireQuote, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return wireQuote{}, err
	}
	if fields == nil {
		return wireQuote{}, errors.New("body is null, not an object")
	}
	return wireQuote{
		C: fields["c"], D: fields["d"], DP: fields["dp"], H: fields["h"],
		L: fields["l"], O: fields["o"], PC: fields["pc"], T: fields["t"],
	}, nil
}

// parseQuote decodes and validates a 200 answer's body.
func parseQuote(symbol string, body []byte) (tasks.Quote, error) {
	w, err := decodeWire(body)
	if err != nil {
		return tasks.Quote{}, fmt.Errorf("%w: %w", tasks.ErrInvalidQuote, err)
	}
	price, priceVal, err := number("c", w.C, true)
	if err != nil {
		return tasks.Quote{}, err
	}
	ts, err := unixTime(w.T)
	if err != nil {
		return tasks.Quote{}, err
	}
	switch {
	case priceVal == 0 && ts == 0:
		return tasks.Quote{}, fmt.Errorf("%w %q", tasks.ErrUnknownSymbol, symbol)
	case priceVal == 0:
		return tasks.Quote{}, fmt.Errorf("%w: price c is 0 with quote time t=%d", tasks.ErrInvalidQuote, ts)
	case priceVal < 0:
		return tasks.Quote{}, fmt.Errorf("%w: price c is negative (%s)", tasks.ErrInvalidQuote, price)
	case ts <= 0:
		return tasks.Quote{}, fmt.Errorf("%w: quote time t must be positive, got %d", tasks.ErrInvalidQuote, ts)
	}
	q := tasks.Quote{Symbol: symbol, Price: price, QuotedAt: time.Unix(ts, 0).UTC()}
	for _, f := range []struct {
		name        string
		raw         json.RawMessage
		dst         *json.Number
		nonNegative bool
	}{
		{"d", w.D, &q.Change, false},
		{"dp", w.DP, &q.ChangePct, false},
		{"h", w.H, &q.DayHigh, true},
		{"l", w.L, &q.DayLow, true},
		{"o", w.O, &q.DayOpen, true},
		{"pc", w.PC, &q.PrevClose, true},
	} {
		n, v, err := number(f.name, f.raw, false)
		if err != nil {
			return tasks.Quote{}, err
		}
		if f.nonNegative && v < 0 {
			return tasks.Quote{}, fmt.Errorf("%w: %s is negative (%s)", tasks.ErrInvalidQuote, f.name, n)
		}
		*f.dst = n
	}
	return q, nil
}

// number checks that raw is a finite JSON number and returns its exact text
// and its value. A missing or null optional field gives "".
func number(name string, raw json.RawMessage, required bool) (json.Number, float64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return "", 0, fmt.Errorf("%w: %s is missing or null", tasks.ErrInvalidQuote, name)
		}
		return "", 0, nil
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return "", 0, fmt.Errorf("%w: %s is not a number: %.40s", tasks.ErrInvalidQuote, name, raw)
	}
	s := string(raw)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return "", 0, fmt.Errorf("%w: %s is not a finite number: %.40s", tasks.ErrInvalidQuote, name, s)
	}
	return json.Number(s), v, nil
}

// maxUnixTime is 9999-12-31T23:59:59Z. A later t is no real quote time, and
// it does not survive the trip: a time.Time past year 9999 cannot be encoded
// as JSON (the task's result), and far later ones overflow pgx's timestamptz
// encoding, which would store a wrong date.
const maxUnixTime = 253402300799

// unixTime reads t, the quote time in whole Unix seconds.
func unixTime(raw json.RawMessage) (int64, error) {
	n, v, err := number("t", raw, true)
	if err != nil {
		return 0, err
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		// 1763719200.0 or 1.7637192e9: accepted when integral and in range.
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, fmt.Errorf("%w: t is not a whole number of seconds: %s", tasks.ErrInvalidQuote, n)
		}
		i = int64(v)
	}
	if i > maxUnixTime {
		return 0, fmt.Errorf("%w: quote time t is after year 9999: %s", tasks.ErrInvalidQuote, n)
	}
	return i, nil
}
