package schedule

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Market is an exchange's trading calendar as the schedule needs it.
type Market interface {
	// Session returns the regular session that contains t (open <= t <
	// close) or, when none does, the first one that opens after t.
	Session(t time.Time) (open, close time.Time, err error)
}

// maxSessionHops bounds the search for a slot inside a session: a cron
// spec that never falls inside one (say 17:00 for a 09:30-16:00 exchange)
// gives up after this many sessions instead of looping.
const maxSessionHops = 400

// ErrNoSlot is returned when an entry has no slot inside a session within
// maxSessionHops sessions.
var ErrNoSlot = errors.New("no slot inside a session")

// Interval is what a slot's lateness is measured against: for `every`, the
// interval; for cron, the gap from slot to the next cron time. The next
// slot (RawNext) is also the deadline of the slot's tasks.
func (e *Entry) Interval(slot time.Time) time.Duration { return e.RawNext(slot).Sub(slot) }

// Grace is how late after slot its firing may still begin: the entry's
// misfire_grace, at most the slot's interval, so a slot whose successor is
// due never fires.
func (e *Entry) Grace(slot time.Time) time.Duration {
	g := cmp.Or(e.MisfireGrace, DefaultMisfireGrace)
	if iv := e.Interval(slot); iv > 0 && iv < g {
		return iv
	}
	return g
}

// Missed reports whether a firing of slot that would begin at now is more
// than the slot's Grace late: then no replica begins it at now.
func (e *Entry) Missed(slot, now time.Time) bool { return now.Sub(slot) > e.Grace(slot) }

// RawNext returns the first slot strictly after t, ignoring the market:
// the next multiple of Every since the Unix epoch, or the next cron time in
// the entry's time zone.
func (e *Entry) RawNext(t time.Time) time.Time {
	if e.spec == nil {
		return e.floor(t).Add(e.Every).In(e.Location)
	}
	return e.cronNext(t)
}

// cronNext is the next cron time strictly after t, with Vixie cron's
// daylight-saving rules for a spec whose hour field is fixed (not every
// hour): a wall-clock time that repeats when clocks fall back fires only
// at its first occurrence, and one inside the hour skipped when they
// spring forward fires at the first instant after the gap (03:00 EDT for
// "30 2 * * *" in America/New_York). A spec with every hour fires at
// every real instant that matches it.
func (e *Entry) cronNext(t time.Time) time.Time {
	t = t.In(e.Location)
	spec, fixed := e.spec.(*cron.SpecSchedule)
	fixed = fixed && spec.Hour&allHours != allHours
	for {
		n := e.spec.Next(t)
		if !fixed || n.IsZero() {
			return n
		}
		if g := gapFiring(spec, t, n); !g.IsZero() {
			return g
		}
		if !repeated(n) {
			return n
		}
		t = n
	}
}

// allHours has the bits of hours 0-23 of a cron.SpecSchedule set.
const allHours = 1<<24 - 1

// maxShift is the largest daylight-saving change looked for (the world's
// are 30 minutes to 2 hours).
const maxShift = 3 * time.Hour

// repeated reports whether n's wall-clock time already happened earlier
// the same night: n is in the hour that repeats when clocks fall back.
func repeated(n time.Time) bool {
	wall := n.Format(time.DateTime)
	for d := 15 * time.Minute; d <= maxShift; d += 15 * time.Minute {
		if n.Add(-d).Format(time.DateTime) == wall {
			return true
		}
	}
	return false
}

// gapFiring returns the first instant after a spring-forward gap in (t, n]
// that skipped a wall-clock minute spec matches, or zero if none did.
func gapFiring(spec *cron.SpecSchedule, t, n time.Time) time.Time {
	for z := t; ; {
		_, end := z.ZoneBounds()
		if end.IsZero() || end.After(n) {
			return time.Time{}
		}
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		// The skipped wall-clock times, as UTC times with the same fields.
		from := time.Unix(end.Unix()+int64(before), 0).UTC()
		to := time.Unix(end.Unix()+int64(after), 0).UTC()
		for m := from; m.Before(to); m = m.Add(time.Minute) {
			if matches(spec, m) {
				return end
			}
		}
		z = end
	}
}

// matches reports whether the wall-clock minute m matches spec, by
// robfig/cron's rules (day of month or day of week when both are set).
func matches(spec *cron.SpecSchedule, m time.Time) bool {
	const starBit = 1 << 63
	if 1<<uint(m.Minute())&spec.Minute == 0 || 1<<uint(m.Hour())&spec.Hour == 0 || 1<<uint(m.Month())&spec.Month == 0 {
		return false
	}
	dom := 1<<uint(m.Day())&spec.Dom > 0
	dow := 1<<uint(m.Weekday())&spec.Dow > 0
	if spec.Dom&starBit > 0 || spec.Dow&starBit > 0 {
		return dom && dow
	}
	return dom || dow
}

// RawPrev returns the latest slot at or before t, ignoring the market.
func (e *Entry) RawPrev(t time.Time) time.Time {
	if e.spec == nil {
		return e.floor(t).In(e.Location)
	}
	// robfig/cron only looks forward: widen a window back from t until it
	// holds a slot, then walk forward to the last one at or before t.
	for w := time.Second; w < 2*366*24*time.Hour; w *= 2 {
		s := e.cronNext(t.Add(-w))
		if s.After(t) {
			continue
		}
		for {
			n := e.cronNext(s)
			if n.After(t) {
				return s
			}
			s = n
		}
	}
	return time.Time{}
}

// floor is the latest multiple of Every since the epoch at or before t.
func (e *Entry) floor(t time.Time) time.Time {
	d := int64(e.Every)
	n := t.UnixNano()
	q := n / d
	if n%d < 0 {
		q--
	}
	return time.Unix(0, q*d)
}

// Fires reports whether the entry fires at slot: always without a market,
// else only inside a session.
func (e *Entry) Fires(slot time.Time) (bool, error) {
	if e.Market == nil {
		return true, nil
	}
	open, closing, err := e.Market.Session(slot)
	if err != nil {
		return false, fmt.Errorf("schedule %q: market %s: %w", e.Name, e.MarketCode, err)
	}
	return !slot.Before(open) && slot.Before(closing), nil
}

// Next returns the first slot strictly after t at which the entry fires.
// Outside sessions it jumps to the next session's open rather than walking
// through every closed slot, so a minute cron over a long weekend costs a
// few steps.
func (e *Entry) Next(t time.Time) (time.Time, error) {
	c := e.RawNext(t)
	if c.IsZero() {
		return time.Time{}, fmt.Errorf("schedule %q: %w: cron %q has no time after %s", e.Name, ErrNoSlot, e.Cron, t.Format(time.RFC3339))
	}
	if e.Market == nil {
		return c, nil
	}
	for range maxSessionHops {
		open, closing, err := e.Market.Session(c)
		if err != nil {
			return time.Time{}, fmt.Errorf("schedule %q: market %s: %w", e.Name, e.MarketCode, err)
		}
		if c.Before(open) {
			c = e.RawNext(open.Add(-time.Nanosecond)) // the first slot at or after open
			continue
		}
		if c.Before(closing) {
			return c, nil
		}
		c = e.RawNext(c) // Session broke its promise; step on
	}
	return time.Time{}, fmt.Errorf("schedule %q: %w of %s within %d sessions after %s", e.Name, ErrNoSlot, e.MarketCode, maxSessionHops, t.Format(time.RFC3339))
}

// maxCount bounds CountBetween's walk.
const maxCount = 1_000_000

// CountBetween returns how many firing slots lie strictly between a and b:
// by arithmetic for `every` without a market, else by walking the slots, up
// to maxCount.
func (e *Entry) CountBetween(a, b time.Time) (int, error) {
	if !a.Before(b) {
		return 0, nil
	}
	if e.spec == nil && e.Market == nil {
		n := (e.floor(b.Add(-1)).UnixNano() - e.floor(a).UnixNano()) / int64(e.Every)
		return int(n), nil
	}
	n := 0
	for s := a; n < maxCount; n++ {
		next, err := e.Next(s)
		if err != nil {
			return n, err
		}
		if !next.Before(b) {
			return n, nil
		}
		s = next
	}
	return n, nil
}

// Firing is one entry's firing at one slot, as planned by Plan.
type Firing struct {
	At    time.Time // the slot, in the entry's time zone
	Entry *Entry
}

// Plan returns the first count firings of cfg's entries at or after from,
// in time order (entries in file order at the same instant).
func Plan(cfg *Config, from time.Time, count int) ([]Firing, error) {
	next := make([]time.Time, len(cfg.Entries))
	for i, e := range cfg.Entries {
		t, err := e.Next(from.Add(-time.Nanosecond))
		if err != nil {
			return nil, err
		}
		next[i] = t
	}
	out := make([]Firing, 0, count)
	for len(out) < count {
		best := 0
		for i := range next {
			if next[i].Before(next[best]) {
				best = i
			}
		}
		e := cfg.Entries[best]
		out = append(out, Firing{At: next[best].In(e.Location), Entry: e})
		t, err := e.Next(next[best])
		if err != nil {
			return nil, err
		}
		next[best] = t
	}
	return out, nil
}

// CatchUp returns what a runner started at `at` fires besides Plan's
// firings at or after it: for each entry, in file order, its latest slot
// before at, when that slot is inside its market's session and at is
// within the slot's Grace.
func CatchUp(cfg *Config, at time.Time) ([]Firing, error) {
	var out []Firing
	for _, e := range cfg.Entries {
		slot := e.RawPrev(at)
		if slot.IsZero() || !slot.Before(at) || e.Missed(slot, at) {
			continue
		}
		ok, err := e.Fires(slot)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Firing{At: slot.In(e.Location), Entry: e})
		}
	}
	return out, nil
}
