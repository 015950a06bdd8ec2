package quote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickerq/tickerq/tasks"
)

// padBlock is the unit of whitespace FuzzQuoteDecode may append to a body,
// so that bodies around and over MaxBodyBytes are reached.
const padBlock = 16 << 10

// FuzzQuoteDecode sends arbitrary 200 bodies through Client.Quote, the path
// every job takes. It checks that nothing panics, that an accepted quote is
// sane (a finite price > 0, a quote time after 1970 and before year 10000,
// finite optional fields, non-negative day prices), that every refusal is a
// permanent failure, and that a body over MaxBodyBytes is refused as too
// large.
func FuzzQuoteDecode(f *testing.F) {
	for _, s := range []string{
		`{"c":173.25,"d":1.2,"dp":0.7,"h":174.1,"l":171.5,"o":172.0,"pc":172.05,"t":1763719200}`,
		`{"c":173.25,"t":1763719200}`,
		`{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`,
		`{"c":0,"t":1763719200}`,
		`{"c":-1,"t":1763719200}`,
		`{"c":-0,"t":1}`,
		`{"c":1e-400,"t":1}`,
		`{"c":1e400,"t":1}`,
		`{"c":"173.25","t":1763719200}`,
		`{"c":NaN,"t":1}`,
		`{"c":173.25,"t":1.7637192e9}`,
		`{"c":173.25,"t":1763719200.5}`,
		`{"c":173.25,"t":253402300799}`,
		`{"c":173.25,"t":253402300800}`,
		`{"c":173.25,"t":-5}`,
		`{"c":173.25,"t":9223372036854775808}`,
		`{"c":173.25,"t":1e300}`,
		`{"C":173.25,"T":1763719200}`,
		`{"c":173.25,"c":-1,"t":1}`,
		`{"c":1,"t":1,"h":-2}`,
		`{"c":1,"t":1,"d":-2,"dp":-3}`,
		`{"c":1,"t":1,"d":true}`,
		`{"c":1,"t":1,"pc":[1]}`,
		`null`, `[]`, `{}`, `"x"`, ``, `{"c":1,"t":1}garbage`,
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Add([]byte(`{"c":173.25,"t":1763719200}`), uint8(64))  // exactly 1 MiB of padding: over
	f.Add([]byte(`{"c":173.25,"t":1763719200}`), uint8(63))  // just under
	f.Add([]byte(`{"c":173.25,"t":1763719200}`), uint8(255)) // ~4 MiB

	var (
		mu     sync.Mutex
		bodies = map[string][]byte{}
		next   atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body, ok := bodies[r.URL.Query().Get("symbol")]
		mu.Unlock()
		if !ok {
			http.Error(w, "no such body", http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, Timeout: 10 * time.Second, MaxConns: 4})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(c.Close)

	f.Fuzz(func(t *testing.T, raw []byte, pad uint8) {
		body := raw
		if pad > 0 {
			body = append(append([]byte(nil), raw...), strings.Repeat(" ", int(pad)*padBlock)...)
		}
		symbol := "F" + strconv.FormatInt(next.Add(1), 10)
		mu.Lock()
		bodies[symbol] = body
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(bodies, symbol)
			mu.Unlock()
		}()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q, err := c.Quote(ctx, symbol)
		if len(body) > MaxBodyBytes {
			if !errors.Is(err, ErrBodyTooLarge) || !errors.Is(err, tasks.ErrInvalidQuote) {
				t.Fatalf("body of %d bytes: err = %v, want ErrBodyTooLarge and ErrInvalidQuote", len(body), err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidQuote) && !errors.Is(err, tasks.ErrUnknownSymbol) {
				t.Fatalf("body %.200q: err = %v, want ErrInvalidQuote or ErrUnknownSymbol", body, err)
			}
			if q != (tasks.Quote{}) {
				t.Fatalf("body %.200q: refused (%v) but returned %+v", body, err, q)
			}
			return
		}
		if err := checkQuote(q, symbol); err != nil {
			t.Fatalf("body %.200q accepted as %+v: %v", body, q, err)
		}
		if again, err := parseQuote(symbol, body); err != nil || again != q {
			t.Fatalf("body %.200q: parseQuote = %+v, %v; Client.Quote gave %+v", body, again, err, q)
		}
	})
}

// checkQuote reports what is wrong with an accepted quote, if anything.
func checkQuote(q tasks.Quote, symbol string) error {
	if q.Symbol != symbol {
		return fmt.Errorf("symbol %q, want %q", q.Symbol, symbol)
	}
	price, err := finite("c", q.Price)
	switch {
	case err != nil:
		return err
	case q.Price == "":
		return errors.New("no price")
	case !(price > 0):
		return fmt.Errorf("price %s is not > 0", q.Price)
	}
	if q.QuotedAt.Location() != time.UTC || q.QuotedAt.Unix() <= 0 || q.QuotedAt.Year() > 9999 {
		return fmt.Errorf("quote time %v is out of range", q.QuotedAt)
	}
	if _, err := json.Marshal(q.QuotedAt); err != nil {
		return fmt.Errorf("quote time does not encode: %w", err)
	}
	for _, f := range []struct {
		name        string
		n           json.Number
		nonNegative bool
	}{
		{"d", q.Change, false}, {"dp", q.ChangePct, false},
		{"h", q.DayHigh, true}, {"l", q.DayLow, true}, {"o", q.DayOpen, true}, {"pc", q.PrevClose, true},
	} {
		if f.n == "" {
			continue
		}
		v, err := finite(f.name, f.n)
		if err != nil {
			return err
		}
		if f.nonNegative && v < 0 {
			return fmt.Errorf("%s is negative: %s", f.name, f.n)
		}
	}
	return nil
}

// finite parses n, which must be empty or a finite JSON number.
func finite(name string, n json.Number) (float64, error) {
	if n == "" {
		return 0, nil
	}
	var v float64
	if err := json.Unmarshal([]byte(n), &v); err != nil {
		return 0, fmt.Errorf("%s %q is not a JSON number: %w", name, n, err)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%s %q is not finite", name, n)
	}
	return v, nil
}
