package calendar

import "time"

// civil is a calendar date with no time of day and no location.
type civil struct {
	year  int
	month time.Month
	day   int
}

func date(year int, month time.Month, day int) civil { return civil{year, month, day} }

func (c civil) time() time.Time { return time.Date(c.year, c.month, c.day, 0, 0, 0, 0, time.UTC) }

func (c civil) weekday() time.Weekday { return c.time().Weekday() }

func (c civil) addDays(n int) civil {
	y, m, d := c.time().AddDate(0, 0, n).Date()
	return civil{y, m, d}
}

// yearDay is c's day of the year counting from 0.
func (c civil) yearDay() int { return c.time().YearDay() - 1 }

func (c civil) String() string { return c.time().Format(time.DateOnly) }

// nthWeekday is the n-th (from 1) weekday wd of the month.
func nthWeekday(year int, month time.Month, wd time.Weekday, n int) civil {
	first := date(year, month, 1)
	shift := (int(wd) - int(first.weekday()) + 7) % 7
	return first.addDays(shift + 7*(n-1))
}

// lastWeekday is the last weekday wd of the month.
func lastWeekday(year int, month time.Month, wd time.Weekday) civil {
	last := date(year, month+1, 1).addDays(-1)
	shift := (int(last.weekday()) - int(wd) + 7) % 7
	return last.addDays(-shift)
}

// easter is Easter Sunday of the Gregorian calendar, by the anonymous
// Gregorian algorithm (Meeus, Astronomical Algorithms, chapter 8).
func easter(year int) civil {
	a := year % 19
	b, c := year/100, year%100
	d, e := b/4, b%4
	f := (b + 8) / 25
	g := (b - f + 1) / 3
	h := (19*a + b - d - g + 15) % 30
	i, k := c/4, c%4
	l := (32 + 2*e + 2*i - h - k) % 7
	m := (a + 11*h + 22*l) / 451
	month := (h + l - 7*m + 114) / 31
	day := (h+l-7*m+114)%31 + 1
	return date(year, time.Month(month), day)
}

// observance moves a fixed-date holiday that falls on a weekend.
type observance int

const (
	// sundayOnly moves Sunday to Monday and drops Saturday: NYSE Rule 7.2
	// does not close the last trading day of a year for New Year's Day.
	sundayOnly observance = iota
	// nearestWeekday moves Saturday to Friday and Sunday to Monday.
	nearestWeekday
)

// observed is the weekday on which the holiday of date c is kept, and false
// when it is not kept at all.
func observed(c civil, o observance) (civil, bool) {
	switch c.weekday() {
	case time.Saturday:
		if o == sundayOnly {
			return civil{}, false
		}
		return c.addDays(-1), true
	case time.Sunday:
		return c.addDays(1), true
	}
	return c, true
}

// holiday is a full-day closure by rule.
type holiday struct {
	name string
	date civil
}

// holidays are the full-day closures the NYSE and Nasdaq keep by rule in a
// year from FirstYear to LastYear, in date order. None of them moves into
// another year: a Saturday New Year's Day is not kept on December 31.
func holidays(year int) []holiday {
	fixed := func(name string, month time.Month, day int, o observance) []holiday {
		if d, ok := observed(date(year, month, day), o); ok {
			return []holiday{{name, d}}
		}
		return nil
	}
	var hs []holiday
	hs = append(hs, fixed("New Year's Day", time.January, 1, sundayOnly)...)
	hs = append(hs,
		holiday{"Martin Luther King Jr. Day", nthWeekday(year, time.January, time.Monday, 3)},
		holiday{"Washington's Birthday", nthWeekday(year, time.February, time.Monday, 3)},
		holiday{"Good Friday", easter(year).addDays(-2)},
		holiday{"Memorial Day", lastWeekday(year, time.May, time.Monday)},
	)
	if year >= 2022 { // first kept by the exchanges in 2022
		hs = append(hs, fixed("Juneteenth", time.June, 19, nearestWeekday)...)
	}
	hs = append(hs, fixed("Independence Day", time.July, 4, nearestWeekday)...)
	hs = append(hs,
		holiday{"Labor Day", nthWeekday(year, time.September, time.Monday, 1)},
		holiday{"Thanksgiving Day", thanksgiving(year)},
	)
	return append(hs, fixed("Christmas Day", time.December, 25, nearestWeekday)...)
}

func thanksgiving(year int) civil { return nthWeekday(year, time.November, time.Thursday, 4) }

// earlyCloses are the days of a year that close at 13:00 by rule, in date
// order, when they are trading days at all:
//   - the day before Independence Day when it is a Monday, Tuesday or
//     Thursday, and a Wednesday from 2013; before 2013 a Thursday July 4 made
//     Friday July 5 the early close instead (2002: Wednesday July 3 was a
//     full day, Friday July 5 closed at 13:00);
//   - the day after Thanksgiving;
//   - Christmas Eve from Monday to Thursday.
//
// The 2002 exception is pandas_market_calendars' rule
// FridayAfterIndependenceDayNYSEpre2013 (holidays_nyse.py).
func earlyCloses(year int) []civil {
	var ds []civil
	switch july3 := date(year, time.July, 3); july3.weekday() {
	case time.Monday, time.Tuesday, time.Thursday:
		ds = append(ds, july3)
	case time.Wednesday:
		if year >= 2013 {
			ds = append(ds, july3)
		} else {
			ds = append(ds, date(year, time.July, 5))
		}
	}
	ds = append(ds, thanksgiving(year).addDays(1))
	if eve := date(year, time.December, 24); eve.weekday() >= time.Monday && eve.weekday() <= time.Thursday {
		ds = append(ds, eve)
	}
	return ds
}

// oneOffClosures are the days since 2000 on which the NYSE closed for the
// whole day outside its rules: the September 11 attacks (2001-09-11 to 14,
// reopening on Monday 17), the national days of mourning for Ronald Reagan
// (2004-06-11), Gerald Ford (2007-01-02), George H. W. Bush (2018-12-05) and
// Jimmy Carter (2025-01-09), and Hurricane Sandy (2012-10-29 and 30).
//
// Nasdaq closed on each of the same days, so both exchanges share the table.
// Sources: pandas_market_calendars, holidays_nyse.py (September11Closings2001,
// ReaganMourning2004, FordMourning2007, HurricaneSandyClosings2012,
// GeorgeHWBushDeath2018), whose NYSE calendar also serves as its NASDAQ one;
// for 2025-01-09 the NYSE Group and Nasdaq announcements of 2024-12-30, as
// reported by International Business Times ("NYSE, Nasdaq Markets Closed Jan.
// 9 For Day Of Mourning For Jimmy Carter") and The Epoch Times ("NYSE, Nasdaq
// to Close on Jan. 9 to Observe Day of Mourning for Carter").
var oneOffClosures = []holiday{
	{"September 11 attacks", date(2001, time.September, 11)},
	{"September 11 attacks", date(2001, time.September, 12)},
	{"September 11 attacks", date(2001, time.September, 13)},
	{"September 11 attacks", date(2001, time.September, 14)},
	{"Mourning for Ronald Reagan", date(2004, time.June, 11)},
	{"Mourning for Gerald Ford", date(2007, time.January, 2)},
	{"Hurricane Sandy", date(2012, time.October, 29)},
	{"Hurricane Sandy", date(2012, time.October, 30)},
	{"Mourning for George H. W. Bush", date(2018, time.December, 5)},
	{"Mourning for Jimmy Carter", date(2025, time.January, 9)},
}

// oneOffEarlyCloses are the days since 2000 that closed at 13:00 outside
// the rules: Friday 2003-12-26, the day after Christmas
// (pandas_market_calendars, DayAfterChristmas1pmEarlyCloseAdhoc). Unplanned
// stops, such as the NYSE's 15:56 close of 2005-06-01 on a systems
// communication problem, were not scheduled sessions and are left out.
var oneOffEarlyCloses = []civil{
	date(2003, time.December, 26),
}
