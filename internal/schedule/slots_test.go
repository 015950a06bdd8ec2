package schedule

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var newYork = mustLocation("America/New_York")

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// fakeMarket trades 09:30-16:00 New York on weekdays except holidays, and
// closes at 13:00 on early days (dates as YYYY-MM-DD). It counts calls.
type fakeMarket struct {
	holidays, early map[string]bool
	calls           int
}

func newFakeMarket(holidays, early []string) *fakeMarket {
	m := &fakeMarket{holidays: map[string]bool{}, early: map[string]bool{}}
	for _, d := range holidays {
		m.holidays[d] = true
	}
	for _, d := range early {
		m.early[d] = true
	}
	return m
}

func (m *fakeMarket) Session(t time.Time) (time.Time, time.Time, error) {
	m.calls++
	t = t.In(newYork)
	if t.Year() < 2000 || t.Year() > 2099 {
		return time.Time{}, time.Time{}, errors.New("out of range")
	}
	for d := range 30 {
		day := time.Date(t.Year(), t.Month(), t.Day()+d, 0, 0, 0, 0, newYork)
		key := day.Format(time.DateOnly)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday || m.holidays[key] {
			continue
		}
		open := day.Add(9*time.Hour + 30*time.Minute)
		closing := day.Add(16 * time.Hour)
		if m.early[key] {
			closing = day.Add(13 * time.Hour)
		}
		if t.Before(closing) {
			return open, closing, nil
		}
	}
	return time.Time{}, time.Time{}, errors.New("no session within 30 days")
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func cronEntry(t *testing.T, spec string, loc *time.Location, m Market) *Entry {
	t.Helper()
	s, err := cronParser.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	e := &Entry{Name: "e", Cron: spec, spec: s, Location: loc, Symbols: []string{"A"}}
	if m != nil {
		e.Market, e.MarketCode = m, "XNYS"
	}
	return e
}

func everyEntry(d time.Duration) *Entry {
	return &Entry{Name: "e", Every: d, Location: time.UTC, Symbols: []string{"A"}}
}

func TestRawNextPrev(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		e          *Entry
		at         string
		prev, next string
	}{
		{"every on a slot", everyEntry(2 * time.Second), "2026-01-01T00:00:10Z", "2026-01-01T00:00:10Z", "2026-01-01T00:00:12Z"},
		{"every between", everyEntry(7 * time.Second), "1970-01-01T00:00:20Z", "1970-01-01T00:00:14Z", "1970-01-01T00:00:21Z"},
		{"every before epoch", everyEntry(7 * time.Second), "1969-12-31T23:59:55Z", "1969-12-31T23:59:53Z", "1970-01-01T00:00:00Z"},
		{"minute cron", cronEntry(t, "* * * * *", time.UTC, nil), "2026-03-02T10:00:30Z", "2026-03-02T10:00:00Z", "2026-03-02T10:01:00Z"},
		{"weekly cron", cronEntry(t, "0 9 * * 1", newYork, nil), "2026-03-04T12:00:00Z", "2026-03-02T09:00:00-05:00", "2026-03-09T09:00:00-04:00"},
		{"cron on a slot", cronEntry(t, "*/15 * * * *", time.UTC, nil), "2026-03-02T10:15:00Z", "2026-03-02T10:15:00Z", "2026-03-02T10:30:00Z"},
		{"yearly cron", cronEntry(t, "0 0 1 1 *", time.UTC, nil), "2026-06-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := mustParse(t, tc.at)
			if got := tc.e.RawPrev(at); !got.Equal(mustParse(t, tc.prev)) {
				t.Errorf("RawPrev(%s) = %s, want %s", tc.at, got, tc.prev)
			}
			if got := tc.e.RawNext(at); !got.Equal(mustParse(t, tc.next)) {
				t.Errorf("RawNext(%s) = %s, want %s", tc.at, got, tc.next)
			}
		})
	}
}

// TestPlanMarket: a minute cron on XNYS from a Friday morning before a
// Monday holiday fires 09:30-15:59 Friday, nothing on the weekend or the
// holiday, from 09:30 Tuesday; on an early-close day its last slot is 12:59.
func TestPlanMarket(t *testing.T) {
	t.Parallel()
	m := newFakeMarket([]string{"2027-01-18"}, []string{"2026-11-27"})
	cfg := &Config{Entries: []*Entry{cronEntry(t, "* * * * *", newYork, m)}}

	plan, err := Plan(cfg, mustParse(t, "2027-01-15T09:00:00-05:00"), 392)
	if err != nil {
		t.Fatal(err)
	}
	wantAt := map[int]string{
		0:   "2027-01-15T09:30:00-05:00",
		389: "2027-01-15T15:59:00-05:00",
		390: "2027-01-19T09:30:00-05:00",
		391: "2027-01-19T09:31:00-05:00",
	}
	for i, want := range wantAt {
		if got := plan[i].At.Format(time.RFC3339); got != want {
			t.Errorf("firing %d at %s, want %s", i, got, want)
		}
	}
	if m.calls > 2000 {
		t.Errorf("%d market calls for 392 firings: closed hours must be jumped, not walked", m.calls)
	}

	plan, err = Plan(cfg, mustParse(t, "2026-11-27T12:58:00-05:00"), 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range plan {
		got = append(got, f.At.Format(time.RFC3339))
	}
	if want := "2026-11-27T12:58:00-05:00 2026-11-27T12:59:00-05:00 2026-11-30T09:30:00-05:00"; strings.Join(got, " ") != want {
		t.Errorf("early close: %s, want %s", strings.Join(got, " "), want)
	}
}

func TestPlanInterleaves(t *testing.T) {
	t.Parallel()
	a := everyEntry(20 * time.Second)
	a.Name = "a"
	b := cronEntry(t, "* * * * *", time.UTC, nil)
	b.Name = "b"
	plan, err := Plan(&Config{Entries: []*Entry{a, b}}, mustParse(t, "2026-03-02T10:00:00Z"), 5)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range plan {
		got = append(got, fmt.Sprintf("%s %s", f.At.Format("15:04:05"), f.Entry.Name))
	}
	if want := "10:00:00 a,10:00:00 b,10:00:20 a,10:00:40 a,10:01:00 a"; strings.Join(got, ",") != want {
		t.Errorf("plan = %s, want %s", strings.Join(got, ","), want)
	}
}

func TestNextNeverInSession(t *testing.T) {
	t.Parallel()
	e := cronEntry(t, "0 17 * * *", newYork, newFakeMarket(nil, nil))
	if _, err := e.Next(mustParse(t, "2026-03-02T10:00:00Z")); !errors.Is(err, ErrNoSlot) {
		t.Errorf("Next: err = %v, want ErrNoSlot", err)
	}
}

func TestCountBetween(t *testing.T) {
	t.Parallel()
	m := newFakeMarket(nil, nil)
	tests := []struct {
		name string
		e    *Entry
		a, b string
		want int
	}{
		{"every", everyEntry(2 * time.Second), "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z", 4},
		{"every adjacent", everyEntry(2 * time.Second), "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z", 0},
		{"every a month", everyEntry(time.Second), "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", 31*86400 - 1},
		{"cron", cronEntry(t, "*/10 * * * *", time.UTC, nil), "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 5},
		// Friday 15:58 to Monday 09:31: 15:59 Friday and 09:30 Monday.
		{"market weekend", cronEntry(t, "* * * * *", newYork, m), "2026-03-06T15:58:00-05:00", "2026-03-09T09:31:00-04:00", 2},
		{"empty", everyEntry(time.Second), "2026-01-01T00:00:10Z", "2026-01-01T00:00:00Z", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.e.CountBetween(mustParse(t, tc.a), mustParse(t, tc.b))
			if err != nil || got != tc.want {
				t.Errorf("CountBetween = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestCronDST: in America/New_York a fixed-hour cron fires once on the
// night clocks fall back (at the first 01:30) and, on the night they
// spring forward, fires a time inside the skipped hour at 03:00 EDT; a
// cron of every hour fires at each real instant, and `every` slots stay
// multiples of the interval in Unix time.
func TestCronDST(t *testing.T) {
	t.Parallel()
	plan := func(e *Entry, from string, n int) string {
		t.Helper()
		p, err := Plan(&Config{Entries: []*Entry{e}}, mustParse(t, from), n)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range p {
			out = append(out, f.At.Format(time.RFC3339))
		}
		return strings.Join(out, " ")
	}
	every := everyEntry(30 * time.Minute)
	every.Location = newYork
	tests := []struct {
		name string
		e    *Entry
		from string
		n    int
		want string
	}{
		{"fall back fixed time once", cronEntry(t, "30 1 * * *", newYork, nil), "2026-10-31T00:00:00-04:00", 3,
			"2026-10-31T01:30:00-04:00 2026-11-01T01:30:00-04:00 2026-11-02T01:30:00-05:00"},
		{"fall back fixed hour, every minute once", cronEntry(t, "*/20 1 * * *", newYork, nil), "2026-11-01T00:50:00-04:00", 4,
			"2026-11-01T01:00:00-04:00 2026-11-01T01:20:00-04:00 2026-11-01T01:40:00-04:00 2026-11-02T01:00:00-05:00"},
		{"fall back every-hour cron at each instant", cronEntry(t, "*/30 * * * *", newYork, nil), "2026-11-01T01:00:00-04:00", 4,
			"2026-11-01T01:00:00-04:00 2026-11-01T01:30:00-04:00 2026-11-01T01:00:00-05:00 2026-11-01T01:30:00-05:00"},
		{"spring forward fires after the gap", cronEntry(t, "30 2 * * *", newYork, nil), "2026-03-07T00:00:00-05:00", 3,
			"2026-03-07T02:30:00-05:00 2026-03-08T03:00:00-04:00 2026-03-09T02:30:00-04:00"},
		{"spring forward, slot after the gap fires once", cronEntry(t, "0 2,3 * * *", newYork, nil), "2026-03-08T00:00:00-05:00", 3,
			"2026-03-08T03:00:00-04:00 2026-03-09T02:00:00-04:00 2026-03-09T03:00:00-04:00"},
		{"spring forward, other days unaffected", cronEntry(t, "30 2 * * 1", newYork, nil), "2026-03-07T00:00:00-05:00", 1,
			"2026-03-09T02:30:00-04:00"},
		{"spring forward every-hour cron skips the gap", cronEntry(t, "30 * * * *", newYork, nil), "2026-03-08T01:00:00-05:00", 2,
			"2026-03-08T01:30:00-05:00 2026-03-08T03:30:00-04:00"},
		{"every across fall back", every, "2026-11-01T05:00:00Z", 4,
			"2026-11-01T01:00:00-04:00 2026-11-01T01:30:00-04:00 2026-11-01T01:00:00-05:00 2026-11-01T01:30:00-05:00"},
		{"every across spring forward", every, "2026-03-08T06:30:00Z", 3,
			"2026-03-08T01:30:00-05:00 2026-03-08T03:00:00-04:00 2026-03-08T03:30:00-04:00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := plan(tc.e, tc.from, tc.n); got != tc.want {
				t.Errorf("firings\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// The repeated 01:30 is not a slot: a time inside the repeated hour
	// belongs to the first 01:30, whose successor is the next day's.
	e := cronEntry(t, "30 1 * * *", newYork, nil)
	at := mustParse(t, "2026-11-01T01:45:00-05:00")
	if got, want := e.RawPrev(at), mustParse(t, "2026-11-01T01:30:00-04:00"); !got.Equal(want) {
		t.Errorf("RawPrev(%s) = %s, want %s", at, got, want)
	}
	if got, want := e.RawNext(at), mustParse(t, "2026-11-02T01:30:00-05:00"); !got.Equal(want) {
		t.Errorf("RawNext(%s) = %s, want %s", at, got, want)
	}
}

// TestGrace: a start fires an entry's latest slot before it only within
// the entry's misfire_grace (default 1m, or the file's, or its own), never
// more than the slot's interval, and only inside its market's session.
func TestGrace(t *testing.T) {
	t.Parallel()
	const londonClose = "  - name: e\n    cron: \"0 17 * * 1-5\"\n    timezone: Europe/London\n    symbols: [BP]\n"
	tests := []struct {
		name, yaml string
		slot       string        // the entry's latest slot before the start
		after      time.Duration // how long after it the start is
		grace      time.Duration // the slot's grace
		fires      bool          // the start fires the slot
	}{
		{"daily, 30s after", londonClose, "2026-12-03T17:00:00Z", 30 * time.Second, time.Minute, true},
		{"daily, 1m after", londonClose, "2026-12-03T17:00:00Z", time.Minute, time.Minute, true},
		{"daily, 61s after", londonClose, "2026-12-03T17:00:00Z", 61 * time.Second, time.Minute, false},
		{"daily, 21.6h after", londonClose, "2026-12-03T17:00:00Z", 21*time.Hour + 37*time.Minute, time.Minute, false},
		{"every 30s: the interval caps the grace", "  - name: e\n    every: 30s\n    symbols: [A]\n",
			"2026-12-04T14:36:30Z", 29 * time.Second, 30 * time.Second, true},
		{"every 30s, 2m grace: capped too", "  - name: e\n    every: 30s\n    symbols: [A]\n    misfire_grace: 2m\n",
			"2026-12-04T14:36:30Z", 29 * time.Second, 30 * time.Second, true},
		{"own grace 2h, 1h after", londonClose + "    misfire_grace: 2h\n", "2026-12-03T17:00:00Z", time.Hour, 2 * time.Hour, true},
		{"own grace 2h, 3h after", londonClose + "    misfire_grace: 2h\n", "2026-12-03T17:00:00Z", 3 * time.Hour, 2 * time.Hour, false},
		{"own grace a day: yesterday's slot", londonClose + "    misfire_grace: 24h\n", "2026-12-03T17:00:00Z", 21*time.Hour + 37*time.Minute, 24 * time.Hour, true},
		{"file's grace 10s, 20s after", "misfire_grace: 10s\nschedules:\n" + londonClose, "2026-12-03T17:00:00Z", 20 * time.Second, 10 * time.Second, false},
		{"file's grace 10s, 5s after", "misfire_grace: 10s\nschedules:\n" + londonClose, "2026-12-03T17:00:00Z", 5 * time.Second, 10 * time.Second, true},
		{"file's 10s, own 1m, 20s after", "misfire_grace: 10s\nschedules:\n" + londonClose + "    misfire_grace: 1m\n",
			"2026-12-03T17:00:00Z", 20 * time.Second, time.Minute, true},
		{"market, inside the session", "  - name: e\n    cron: \"* * * * *\"\n    market: XNYS\n    timezone: America/New_York\n    symbols: [A]\n",
			"2026-12-04T10:00:00-05:00", 30 * time.Second, time.Minute, true},
		{"market, outside the session", "  - name: e\n    cron: \"* * * * *\"\n    market: XNYS\n    timezone: America/New_York\n    symbols: [A]\n",
			"2026-12-05T10:00:00-05:00", 30 * time.Second, time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := tc.yaml
			if !strings.Contains(doc, "schedules:") {
				doc = "schedules:\n" + doc
			}
			cfg, err := parseAt([]byte(doc), t.TempDir(), fakeMarkets, fuzzNow)
			if err != nil {
				t.Fatal(err)
			}
			e, slot := cfg.Entries[0], mustParse(t, tc.slot)
			start := slot.Add(tc.after)
			if got := e.RawPrev(start); !got.Equal(slot) {
				t.Fatalf("latest slot before %s = %s, want %s", start, got, slot)
			}
			if got := e.Grace(slot); got != tc.grace {
				t.Errorf("Grace = %s, want %s", got, tc.grace)
			}
			got, err := CatchUp(cfg, start)
			if err != nil {
				t.Fatal(err)
			}
			if fires := len(got) == 1 && got[0].At.Equal(slot) && got[0].Entry == e; fires != tc.fires || len(got) > 1 {
				t.Errorf("CatchUp(%s) = %v, want the slot fired: %t", start.Format(time.RFC3339), got, tc.fires)
			}
		})
	}
}

// TestCatchUpOnTheSlot: a start exactly at a slot fires it on time, so
// Plan lists it and CatchUp does not.
func TestCatchUpOnTheSlot(t *testing.T) {
	t.Parallel()
	cfg := &Config{Entries: []*Entry{everyEntry(30 * time.Second)}}
	at := mustParse(t, "2026-12-04T14:37:00Z")
	if got, err := CatchUp(cfg, at); err != nil || len(got) != 0 {
		t.Errorf("CatchUp = %v, %v; want nothing", got, err)
	}
	if got, err := CatchUp(cfg, at.Add(time.Second)); err != nil || len(got) != 1 || !got[0].At.Equal(at) {
		t.Errorf("a second later: CatchUp = %v, %v; want the slot at %s", got, err, at)
	}
}
