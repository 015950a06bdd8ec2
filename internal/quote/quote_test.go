package quote

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tickerq/tickerq/tasks"
)

// contractExample is the answer the contract shows for GOOG.
const contractExample = `{"c":173.25,"d":1.2,"dp":0.7,"h":174.1,"l":171.5,"o":172.0,"pc":172.05,"t":1763719200}`

func TestParseQuoteAccepts(t *testing.T) {
	t.Parallel()
	at := time.Unix(1763719200, 0).UTC()
	for _, tc := range []struct {
		name string
		body string
		want tasks.Quote
	}{
		{
			name: "contract example",
			body: contractExample,
			want: tasks.Quote{Symbol: "GOOG", Price: "173.25", Change: "1.2", ChangePct: "0.7",
				DayHigh: "174.1", DayLow: "171.5", DayOpen: "172.0", PrevClose: "172.05", QuotedAt: at},
		},
		{
			name: "exact decimal text is kept",
			body: `{"c":173.250000000000000001,"d":-0.000000000000000001,"t":1763719200}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "173.250000000000000001", Change: "-0.000000000000000001", QuotedAt: at},
		},
		{
			name: "optional fields null",
			body: `{"c":173.25,"d":null,"dp":null,"h":null,"l":null,"o":null,"pc":null,"t":1763719200}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "173.25", QuotedAt: at},
		},
		{
			name: "optional fields missing",
			body: `{"c":173.25,"t":1763719200}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "173.25", QuotedAt: at},
		},
		{
			name: "whitespace around values and unknown fields",
			body: "{\n  \"c\" : 173.25 ,\n  \"t\" : 1763719200,\n  \"extra\": [1, {\"x\": null}]\n}\n",
			want: tasks.Quote{Symbol: "GOOG", Price: "173.25", QuotedAt: at},
		},
		{
			name: "exponent notation",
			body: `{"c":1.7325E2,"t":1.7637192e9}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "1.7325E2", QuotedAt: at},
		},
		{
			name: "integral t written as a float",
			body: `{"c":173.25,"t":1763719200.0}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "173.25", QuotedAt: at},
		},
		{
			name: "last second of year 9999",
			body: `{"c":1,"t":253402300799}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "1", QuotedAt: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		},
		{
			name: "negative change is fine",
			body: `{"c":1,"d":-3.5,"dp":-77.7,"t":1763719200}`,
			want: tasks.Quote{Symbol: "GOOG", Price: "1", Change: "-3.5", ChangePct: "-77.7", QuotedAt: at},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseQuote("GOOG", []byte(tc.body))
			if err != nil {
				t.Fatalf("parseQuote(%s): %v", tc.body, err)
			}
			if !got.QuotedAt.Equal(tc.want.QuotedAt) || got.QuotedAt.Location() != time.UTC {
				t.Errorf("QuotedAt = %v, want %v in UTC", got.QuotedAt, tc.want.QuotedAt)
			}
			got.QuotedAt, tc.want.QuotedAt = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("parseQuote(%s)\n got %+v\nwant %+v", tc.body, got, tc.want)
			}
		})
	}
}

func TestParseQuoteRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want error
	}{
		{"NaN literal", `{"c":NaN,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"Infinity literal", `{"c":Infinity,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative Infinity literal", `{"c":-Infinity,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"quoted NaN", `{"c":"NaN","t":1763719200}`, tasks.ErrInvalidQuote},
		{"overflow 1e999", `{"c":1e999,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"overflow in optional field", `{"c":1,"h":1e999,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"null c", `{"c":null,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"missing c", `{"d":1.2,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"missing t", `{"c":173.25}`, tasks.ErrInvalidQuote},
		{"null t", `{"c":173.25,"t":null}`, tasks.ErrInvalidQuote},
		{"string c", `{"c":"173.25","t":1763719200}`, tasks.ErrInvalidQuote},
		{"string t", `{"c":173.25,"t":"1763719200"}`, tasks.ErrInvalidQuote},
		{"string optional field", `{"c":173.25,"d":"1.2","t":1763719200}`, tasks.ErrInvalidQuote},
		{"bool c", `{"c":true,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"object c", `{"c":{"v":1},"t":1763719200}`, tasks.ErrInvalidQuote},
		{"array c", `{"c":[173.25],"t":1763719200}`, tasks.ErrInvalidQuote},
		{"array body", `[173.25,1763719200]`, tasks.ErrInvalidQuote},
		{"string body", `"173.25"`, tasks.ErrInvalidQuote},
		{"null body", `null`, tasks.ErrInvalidQuote},
		{"empty body", ``, tasks.ErrInvalidQuote},
		{"empty object", `{}`, tasks.ErrInvalidQuote},
		{"negative c", `{"c":-173.25,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative c with t 0", `{"c":-1,"t":0}`, tasks.ErrInvalidQuote},
		{"c 0 with t set", `{"c":0,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative h", `{"c":173.25,"h":-1,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative l", `{"c":173.25,"l":-1,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative o", `{"c":173.25,"o":-1,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"negative pc", `{"c":173.25,"pc":-1,"t":1763719200}`, tasks.ErrInvalidQuote},
		{"fractional t", `{"c":173.25,"t":1763719200.5}`, tasks.ErrInvalidQuote},
		{"huge t", `{"c":173.25,"t":1e300}`, tasks.ErrInvalidQuote},
		// Past year 9999 a time cannot be written as JSON, and pgx would
		// store a wrong date for the second one.
		{"t in year 10000", `{"c":173.25,"t":253402300800}`, tasks.ErrInvalidQuote},
		{"t in year 3170843", `{"c":173.25,"t":99999999999999}`, tasks.ErrInvalidQuote},
		{"t in year 10000 as a float", `{"c":173.25,"t":2.534023008e11}`, tasks.ErrInvalidQuote},
		{"t beyond int64", `{"c":173.25,"t":99999999999999999999}`, tasks.ErrInvalidQuote},
		{"negative t", `{"c":173.25,"t":-1}`, tasks.ErrInvalidQuote},
		{"t 0 with a price", `{"c":173.25,"t":0}`, tasks.ErrInvalidQuote},
		{"trailing garbage", `{"c":173.25,"t":1763719200}x`, tasks.ErrInvalidQuote},
		{"upper-case field names", `{"C":173.25,"T":1763719200}`, tasks.ErrInvalidQuote},
		{"null body", `null`, tasks.ErrInvalidQuote},
		{"second value", `{"c":173.25,"t":1763719200}{}`, tasks.ErrInvalidQuote},
		{"truncated", `{"c":173.25,"t":17637`, tasks.ErrInvalidQuote},
		{"unknown symbol: c 0 and t 0", `{"c":0,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":0}`, tasks.ErrUnknownSymbol},
		{"unknown symbol: 0.0 and 0", `{"c":0.0,"t":0}`, tasks.ErrUnknownSymbol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := parseQuote("GOOG", []byte(tc.body))
			if !errors.Is(err, tc.want) {
				t.Fatalf("parseQuote(%s) = %+v, %v; want an error wrapping %v", tc.body, q, err, tc.want)
			}
			other := tasks.ErrUnknownSymbol
			if tc.want == tasks.ErrUnknownSymbol {
				other = tasks.ErrInvalidQuote
			}
			if errors.Is(err, other) {
				t.Errorf("parseQuote(%s) error %q also wraps %v", tc.body, err, other)
			}
			if q != (tasks.Quote{}) {
				t.Errorf("parseQuote(%s) returned a quote with its error: %+v", tc.body, q)
			}
		})
	}
}

func TestQuoteJSON(t *testing.T) {
	t.Parallel()
	// The task result and logs carry a Quote as JSON; the decimals must stay
	// JSON numbers with their exact text.
	q, err := parseQuote("GOOG", []byte(`{"c":173.250000000000000001,"t":1763719200}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"symbol":"GOOG","price":173.250000000000000001,"quoted_at":"2025-11-21T10:00:00Z"}`
	if string(b) != want {
		t.Errorf("json.Marshal(quote) = %s, want %s", b, want)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 21, 10, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"7", 7 * time.Second, true},
		{" 30 ", 30 * time.Second, true},
		{"0", 0, true},
		{"3600", time.Hour, true},
		{"3601", time.Hour, true},
		{"86400", time.Hour, true},
		{"18446744073709551615", time.Hour, true}, // max uint64
		{"99999999999999999999", time.Hour, true}, // beyond uint64: still a huge delay
		{date(30 * time.Second), 30 * time.Second, true},
		{date(2 * time.Hour), time.Hour, true},
		{date(-30 * time.Second), 0, true},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second, true},
		{now.Add(45 * time.Second).Format(time.ANSIC), 45 * time.Second, true},
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Fri, 99 Nov 2025 10:00:00 GMT", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()
	if got := snippet("  rate\n\tlimited  "); got != "rate limited" {
		t.Errorf("snippet = %q, want %q", got, "rate limited")
	}
	long := snippet(strings.Repeat("x", 1000))
	if !strings.HasPrefix(long, strings.Repeat("x", 200)) || !strings.HasSuffix(long, "…") || len(long) > 210 {
		t.Errorf("snippet of a long body = %q (len %d), want 200 bytes and an ellipsis", long, len(long))
	}
}
