package calendar

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// published are the NYSE's own holiday and early-close lists, as NYSE Group
// announced them for nyse.com/markets/hours-calendars:
//   - 2024: "NYSE Group Announces 2022, 2023 and 2024 Holiday and Early
//     Closings Calendar", Business Wire, 2021-12-27;
//   - 2025, 2026 and 2027: "NYSE Group Announces 2025, 2026 and 2027 Holiday
//     and Early Closings Calendar", Business Wire, 2024-11-08, with
//     2025-01-09 added by NYSE Group's notice of 2024-12-30 closing its
//     markets for the national day of mourning for Jimmy Carter;
//   - 2026 and 2027 again in "NYSE Group Announces 2026, 2027 and 2028
//     Holiday and Early Closings Calendar", 2025-12-23, unchanged.
//
// Nasdaq keeps the same days in these years.
var published = []struct {
	year     int
	holidays []string
	early    []string // 13:00 closes
}{
	{
		year: 2024,
		holidays: []string{"2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27",
			"2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25"},
		early: []string{"2024-07-03", "2024-11-29", "2024-12-24"},
	},
	{
		year: 2025,
		holidays: []string{"2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18",
			"2025-05-26", "2025-06-19", "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25"},
		early: []string{"2025-07-03", "2025-11-28", "2025-12-24"},
	},
	{
		year: 2026,
		holidays: []string{"2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25",
			"2026-06-19", "2026-07-03", "2026-09-07", "2026-11-26", "2026-12-25"},
		early: []string{"2026-11-27", "2026-12-24"},
	},
	{
		year: 2027,
		holidays: []string{"2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31",
			"2027-06-18", "2027-07-05", "2027-09-06", "2027-11-25", "2027-12-24"},
		early: []string{"2027-11-26"},
	},
}

// mustLookup returns the calendar of code or fails the test.
func mustLookup(t *testing.T, code string) *Exchange {
	t.Helper()
	e, err := Lookup(code)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", code, err)
	}
	return e
}

// at is a wall-clock time in New York.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, newYork)
	if err != nil {
		t.Fatalf("bad time in test: %v", err)
	}
	return tm
}

func TestSessionsMatchPublishedLists(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"XNYS", "XNAS"} {
		e := mustLookup(t, code)
		for _, p := range published {
			closed, early := map[string]bool{}, map[string]bool{}
			for _, d := range p.holidays {
				closed[d] = true
			}
			for _, d := range p.early {
				early[d] = true
			}
			var want []string
			for c := date(p.year, time.January, 1); c.year == p.year; c = c.addDays(1) {
				if wd := c.weekday(); wd != time.Saturday && wd != time.Sunday && !closed[c.String()] {
					want = append(want, c.String())
				}
			}

			got, err := e.Sessions(at(t, fmt.Sprintf("%d-01-01 00:00", p.year)), at(t, fmt.Sprintf("%d-12-31 23:59", p.year)))
			if err != nil {
				t.Fatalf("%s %d: %v", code, p.year, err)
			}
			if len(got) != len(want) {
				t.Errorf("%s %d: %d sessions, want %d", code, p.year, len(got), len(want))
			}
			earlySeen := 0
			for i := 0; i < len(got) && i < len(want); i++ {
				s := got[i]
				day := s.Date.Format(time.DateOnly)
				if day != want[i] {
					t.Errorf("%s %d: session %d is %s, want %s", code, p.year, i, day, want[i])
					break
				}
				closeAt := "16:00"
				if early[day] {
					closeAt = "13:00"
					earlySeen++
				}
				wantSession := Session{Date: at(t, day+" 00:00"), Open: at(t, day+" 09:30"), Close: at(t, day+" "+closeAt)}
				if !s.Date.Equal(wantSession.Date) || !s.Open.Equal(wantSession.Open) || !s.Close.Equal(wantSession.Close) || s.Open.Location() != newYork {
					t.Errorf("%s %s: session %v, want %v", code, day, s, wantSession)
				}
			}
			if earlySeen != len(p.early) {
				t.Errorf("%s %d: %d early closes among the sessions, want %d", code, p.year, earlySeen, len(p.early))
			}
		}
	}
}

func TestSessionOnHistory(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "XNYS")
	// close is "" for a day without a session, else the closing time.
	tests := []struct {
		day, close, why string
	}{
		{"2000-01-03", "16:00", "first trading day of 2000; Saturday 2000-01-01 not observed"},
		{"2000-01-17", "", "Martin Luther King Jr. Day"},
		{"2000-04-21", "", "Good Friday"},
		{"2001-09-10", "16:00", "the day before the attacks"},
		{"2001-09-11", "", "September 11"},
		{"2001-09-12", "", "September 11"},
		{"2001-09-13", "", "September 11"},
		{"2001-09-14", "", "September 11"},
		{"2001-09-17", "16:00", "reopening"},
		{"2002-07-03", "16:00", "Wednesday before a Thursday July 4, before 2013"},
		{"2002-07-05", "13:00", "Friday after a Thursday July 4, before 2013"},
		{"2003-12-26", "13:00", "one-off early close"},
		{"2004-06-11", "", "Reagan"},
		{"2004-12-31", "16:00", "New Year's Day 2005 on a Saturday"},
		{"2006-01-02", "", "New Year's Day on a Sunday"},
		{"2007-01-02", "", "Ford"},
		{"2008-12-26", "16:00", "a full day after Christmas"},
		{"2010-07-05", "", "Independence Day on a Sunday"},
		{"2010-12-24", "", "Christmas on a Saturday"},
		{"2012-10-29", "", "Hurricane Sandy"},
		{"2012-10-30", "", "Hurricane Sandy"},
		{"2012-10-31", "16:00", "reopening after Sandy"},
		{"2013-07-03", "13:00", "Wednesday before July 4 from 2013"},
		{"2015-07-03", "", "Independence Day on a Saturday"},
		{"2018-12-05", "", "George H. W. Bush"},
		{"2020-07-03", "", "Independence Day on a Saturday"},
		{"2021-06-18", "16:00", "before Juneteenth was an exchange holiday"},
		{"2021-12-24", "", "Christmas observed"},
		{"2021-12-31", "16:00", "New Year's Day 2022 on a Saturday"},
		{"2022-06-20", "", "Juneteenth observed"},
		{"2025-01-09", "", "Carter"},
		{"2026-07-02", "16:00", "Thursday before the Friday holiday"},
		{"2026-07-03", "", "Independence Day observed"},
		{"2026-11-27", "13:00", "day after Thanksgiving"},
		{"2099-12-31", "16:00", "last day of the calendar, a Thursday"},
	}
	for _, tt := range tests {
		c := mustDate(t, tt.day)
		s, open, err := e.SessionOn(c.year, c.month, c.day)
		if err != nil {
			t.Errorf("%s: %v", tt.day, err)
			continue
		}
		got := ""
		if open {
			got = s.Close.Format("15:04")
		}
		if got != tt.close {
			t.Errorf("%s (%s): close %q, want %q", tt.day, tt.why, got, tt.close)
		}
	}
}

func TestWholeRange(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "xnas")
	all, err := e.Sessions(at(t, "2000-01-01 00:00"), at(t, "2099-12-31 23:59"))
	if err != nil {
		t.Fatal(err)
	}
	// About 252 trading days a year.
	if n := len(all); n < 100*249 || n > 100*254 {
		t.Errorf("%d sessions in 2000-2099, want about 25,200", n)
	}
	if first, last := all[0].Date.Format(time.DateOnly), all[len(all)-1].Date.Format(time.DateOnly); first != "2000-01-03" || last != "2099-12-31" {
		t.Errorf("sessions run from %s to %s, want 2000-01-03 to 2099-12-31", first, last)
	}
	for i, s := range all {
		if i > 0 && !all[i-1].Date.Before(s.Date) {
			t.Fatalf("session %v not after %v", s, all[i-1])
		}
		if wd := s.Date.Weekday(); wd == time.Saturday || wd == time.Sunday {
			t.Fatalf("session on a %s: %v", wd, s)
		}
		if off := s.Open.Sub(s.Date); off != 9*time.Hour+30*time.Minute {
			t.Fatalf("%v opens %v after midnight", s, off)
		}
	}
}

func TestOutOfRange(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "XNYS")
	inside := at(t, "2026-01-05 12:00")
	tests := []struct {
		name string
		call func() error
	}{
		{"SessionOn 1999", func() error { _, _, err := e.SessionOn(1999, time.December, 31); return err }},
		{"SessionOn 2100", func() error { _, _, err := e.SessionOn(2100, time.January, 4); return err }},
		{"Sessions from 1999", func() error { _, err := e.Sessions(at(t, "1999-12-31 12:00"), inside); return err }},
		{"Sessions to 2100", func() error { _, err := e.Sessions(inside, at(t, "2100-01-01 00:00")); return err }},
		{"IsOpen 1999", func() error { _, err := e.IsOpen(at(t, "1999-12-31 12:00")); return err }},
		// 2100-01-01 04:59 UTC is still 2099-12-31 in New York: in range.
		{"IsOpen 2100 in New York", func() error {
			_, err := e.IsOpen(time.Date(2100, time.January, 1, 5, 0, 0, 0, time.UTC))
			return err
		}},
		{"NextSession after the last", func() error { _, err := e.NextSession(at(t, "2099-12-31 16:00")); return err }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%s: err %v, want ErrOutOfRange", tt.name, err)
		}
	}
	if _, err := e.IsOpen(time.Date(2100, time.January, 1, 4, 59, 0, 0, time.UTC)); err != nil {
		t.Errorf("IsOpen at 2099-12-31 23:59 New York: %v", err)
	}
	if _, _, err := e.SessionOn(2026, time.February, 29); !errors.Is(err, ErrInvalidDate) {
		t.Errorf("SessionOn(2026-02-29): err %v, want ErrInvalidDate", err)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"XNYS", "xnys", "XNAS", "Xnas"} {
		e, err := Lookup(code)
		if err != nil {
			t.Errorf("Lookup(%q): %v", code, err)
			continue
		}
		if want := strings.ToUpper(code); e.Code() != want || e.Location().String() != "America/New_York" {
			t.Errorf("Lookup(%q) = %s in %s, want %s in America/New_York", code, e.Code(), e.Location(), want)
		}
	}
	for _, code := range []string{"", "NYSE", "XLON", "XNYSX"} {
		if _, err := Lookup(code); !errors.Is(err, ErrUnknownExchange) {
			t.Errorf("Lookup(%q): err %v, want ErrUnknownExchange", code, err)
		}
	}
}

func TestIsOpen(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "XNYS")
	utc := func(s string) time.Time {
		t.Helper()
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		at   time.Time
		want bool
	}{
		{at(t, "2026-11-25 09:29"), false},
		{at(t, "2026-11-25 09:30"), true},
		{at(t, "2026-11-25 15:59"), true},
		{at(t, "2026-11-25 16:00"), false},
		{at(t, "2026-11-26 12:00"), false}, // Thanksgiving
		{at(t, "2026-11-27 12:59"), true},
		{at(t, "2026-11-27 13:00"), false},   // early close
		{at(t, "2026-11-28 12:00"), false},   // Saturday
		{utc("2026-07-01T13:30:00Z"), true},  // 09:30 EDT
		{utc("2026-07-01T13:29:59Z"), false}, // a second before
		{utc("2026-01-05T14:30:00Z"), true},  // 09:30 EST
		{utc("2026-01-05T21:00:00Z"), false}, // 16:00 EST
		{utc("2026-01-06T02:00:00Z"), false}, // 21:00 on the 5th in New York, the 6th in UTC
	}
	for _, tt := range tests {
		got, err := e.IsOpen(tt.at)
		if err != nil || got != tt.want {
			t.Errorf("IsOpen(%s) = %v, %v; want %v", tt.at.Format(time.RFC3339), got, err, tt.want)
		}
	}
}

func TestNextSession(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "XNYS")
	tests := []struct {
		at, want string
	}{
		{"2026-11-25 08:00", "2026-11-25"}, // before the open
		{"2026-11-25 15:59", "2026-11-25"}, // under way
		{"2026-11-25 16:00", "2026-11-27"}, // after the close, over Thanksgiving
		{"2026-11-27 13:00", "2026-11-30"}, // after an early close, over the weekend
		{"2026-12-31 20:00", "2027-01-04"}, // into the next year
	}
	for _, tt := range tests {
		s, err := e.NextSession(at(t, tt.at))
		if err != nil || s.Date.Format(time.DateOnly) != tt.want {
			t.Errorf("NextSession(%s) = %v, %v; want the session of %s", tt.at, s.Date, err, tt.want)
		}
	}
}

func TestSessionsEmptyAndSingle(t *testing.T) {
	t.Parallel()
	e := mustLookup(t, "XNYS")
	if got, err := e.Sessions(at(t, "2026-11-28 00:00"), at(t, "2026-11-29 23:00")); err != nil || len(got) != 0 {
		t.Errorf("weekend: %v, %v; want no sessions", got, err)
	}
	if got, err := e.Sessions(at(t, "2026-12-02 00:00"), at(t, "2026-12-01 00:00")); err != nil || len(got) != 0 {
		t.Errorf("from after to: %v, %v; want no sessions", got, err)
	}
	// Both ends are days: a time late on the last day still includes it.
	got, err := e.Sessions(at(t, "2026-12-01 23:00"), at(t, "2026-12-01 00:01"))
	if err != nil || len(got) != 1 || got[0].Date.Format(time.DateOnly) != "2026-12-01" {
		t.Errorf("one day: %v, %v; want the session of 2026-12-01", got, err)
	}
}

func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	want, err := mustLookup(t, "XNYS").Sessions(at(t, "2000-01-01 00:00"), at(t, "2099-12-31 00:00"))
	if err != nil {
		t.Fatal(err)
	}
	e := &Exchange{code: "XNYS", loc: newYork} // a fresh, empty cache
	var wg sync.WaitGroup
	counts := make([]int, 8)
	for g := range counts {
		wg.Go(func() {
			for i := range LastYear - FirstYear + 1 {
				y := FirstYear + (i+13*g)%(LastYear-FirstYear+1) // each goroutine starts elsewhere
				got, err := e.Sessions(at(t, fmt.Sprintf("%d-01-01 00:00", y)), at(t, fmt.Sprintf("%d-12-31 00:00", y)))
				if err != nil {
					t.Error(err)
					return
				}
				counts[g] += len(got)
			}
		})
	}
	wg.Wait()
	for g, n := range counts {
		if n != len(want) {
			t.Errorf("goroutine %d counted %d sessions, want %d", g, n, len(want))
		}
	}
}
