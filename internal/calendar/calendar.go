// Package calendar knows when the US stock exchanges trade: the regular
// sessions of the New York Stock Exchange (XNYS) and Nasdaq (XNAS), their
// full-day holidays and 13:00 early closes by rule, and their one-off
// closures since 2000, for the years FirstYear to LastYear. It needs no
// network and no zoneinfo on the machine.
package calendar

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // America/New_York on machines without zoneinfo
)

// The years the calendar covers.
const FirstYear, LastYear = 2000, 2099

var (
	// ErrUnknownExchange is returned by Lookup for a code it does not know.
	ErrUnknownExchange = errors.New("unknown exchange")
	// ErrOutOfRange is returned for a date outside FirstYear to LastYear.
	ErrOutOfRange = errors.New("date outside the calendar's years 2000 to 2099")
	// ErrInvalidDate is returned by SessionOn for a day the month does not have.
	ErrInvalidDate = errors.New("no such date")
)

// Session is one trading day.
type Session struct {
	Date  time.Time // midnight of the day, in the exchange's location
	Open  time.Time // start of the regular session
	Close time.Time // end of the regular session: 16:00, or 13:00 on an early close
}

// Regular session hours, in the exchange's location.
const (
	openHour, openMinute = 9, 30
	closeHour            = 16
	earlyCloseHour       = 13
)

// Exchange is the calendar of one exchange. It is safe for concurrent use.
type Exchange struct {
	code  string
	loc   *time.Location
	years [LastYear - FirstYear + 1]struct {
		once sync.Once
		kind *[366]dayKind
	}
}

// dayKind is what a day of the year is at an exchange.
type dayKind uint8

const (
	closed dayKind = iota // weekend, holiday or one-off closure
	regular
	early // closes at 13:00
)

// newYork is the location of both exchanges.
var newYork = mustLoadLocation("America/New_York")

func mustLoadLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(fmt.Sprintf("calendar: load %s from the embedded zoneinfo: %v", name, err))
	}
	return loc
}

// exchanges are the calendars Lookup hands out; each caches its years.
var exchanges = map[string]*Exchange{
	"XNYS": {code: "XNYS", loc: newYork},
	"XNAS": {code: "XNAS", loc: newYork},
}

// Lookup returns the calendar of the exchange with the ISO 10383 market
// identifier code, XNYS or XNAS, in any case.
func Lookup(code string) (*Exchange, error) {
	e, ok := exchanges[strings.ToUpper(code)]
	if !ok {
		return nil, fmt.Errorf("%w %q: want XNYS or XNAS", ErrUnknownExchange, code)
	}
	return e, nil
}

// Code is the exchange's market identifier code, such as XNYS.
func (e *Exchange) Code() string { return e.code }

// Location is the time zone the exchange's sessions are set in.
func (e *Exchange) Location() *time.Location { return e.loc }

// SessionOn returns the session of a day, and false when the exchange does
// not trade that day. The error wraps ErrOutOfRange for a year outside
// FirstYear to LastYear, and ErrInvalidDate for a day the month lacks.
func (e *Exchange) SessionOn(year int, month time.Month, day int) (s Session, open bool, err error) {
	c := date(year, month, day)
	if y, m, d := c.time().Date(); y != year || m != month || d != day {
		return Session{}, false, fmt.Errorf("%04d-%02d-%02d: %w", year, int(month), day, ErrInvalidDate)
	}
	if year < FirstYear || year > LastYear {
		return Session{}, false, fmt.Errorf("%s: %w", c, ErrOutOfRange)
	}
	s, open = e.session(c)
	return s, open, nil
}

// session is the session of a date known to be in range.
func (e *Exchange) session(c civil) (Session, bool) {
	kind := e.year(c.year)[c.yearDay()]
	if kind == closed {
		return Session{}, false
	}
	closeAt := closeHour
	if kind == early {
		closeAt = earlyCloseHour
	}
	return Session{
		Date:  time.Date(c.year, c.month, c.day, 0, 0, 0, 0, e.loc),
		Open:  time.Date(c.year, c.month, c.day, openHour, openMinute, 0, 0, e.loc),
		Close: time.Date(c.year, c.month, c.day, closeAt, 0, 0, 0, e.loc),
	}, true
}

// Sessions returns the trading days whose date in the exchange's location
// lies from the date of from to the date of to, both included, in order;
// none when from's date is after to's. The error wraps ErrOutOfRange when
// either date is outside FirstYear to LastYear.
func (e *Exchange) Sessions(from, to time.Time) ([]Session, error) {
	first, err := e.civil(from)
	if err != nil {
		return nil, err
	}
	last, err := e.civil(to)
	if err != nil {
		return nil, err
	}
	var out []Session
	for c := first; !c.time().After(last.time()); c = c.addDays(1) {
		if s, ok := e.session(c); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// IsOpen reports whether the regular session is under way at t:
// Open <= t < Close of the trading day that t falls on.
func (e *Exchange) IsOpen(t time.Time) (bool, error) {
	c, err := e.civil(t)
	if err != nil {
		return false, err
	}
	s, ok := e.session(c)
	return ok && !t.Before(s.Open) && t.Before(s.Close), nil
}

// NextSession returns the session under way at t, or else the first one to
// open after t. The error wraps ErrOutOfRange when t is outside the
// calendar's years or no session follows t before the end of LastYear.
func (e *Exchange) NextSession(t time.Time) (Session, error) {
	c, err := e.civil(t)
	if err != nil {
		return Session{}, err
	}
	for ; c.year <= LastYear; c = c.addDays(1) {
		if s, ok := e.session(c); ok && t.Before(s.Close) {
			return s, nil
		}
	}
	return Session{}, fmt.Errorf("no session after %s: %w", t.Format(time.RFC3339), ErrOutOfRange)
}

// civil is the date of t in the exchange's location, checked to be in range.
func (e *Exchange) civil(t time.Time) (civil, error) {
	y, m, d := t.In(e.loc).Date()
	c := date(y, m, d)
	if y < FirstYear || y > LastYear {
		return civil{}, fmt.Errorf("%s: %w", c, ErrOutOfRange)
	}
	return c, nil
}

// year returns the kinds of the days of a year in range, built on first use.
func (e *Exchange) year(y int) *[366]dayKind {
	slot := &e.years[y-FirstYear]
	slot.once.Do(func() { slot.kind = buildYear(y) })
	return slot.kind
}

// buildYear lays out a year of the rules and one-off days that both
// exchanges share.
func buildYear(y int) *[366]dayKind {
	var kind [366]dayKind
	for c := date(y, time.January, 1); c.year == y; c = c.addDays(1) {
		if wd := c.weekday(); wd != time.Saturday && wd != time.Sunday {
			kind[c.yearDay()] = regular
		}
	}
	for _, h := range holidays(y) {
		kind[h.date.yearDay()] = closed
	}
	for _, h := range oneOffClosures {
		if h.date.year == y {
			kind[h.date.yearDay()] = closed
		}
	}
	shortDays := earlyCloses(y)
	for _, c := range oneOffEarlyCloses {
		if c.year == y {
			shortDays = append(shortDays, c)
		}
	}
	for _, c := range shortDays {
		if kind[c.yearDay()] == regular {
			kind[c.yearDay()] = early
		}
	}
	return &kind
}
