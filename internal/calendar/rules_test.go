package calendar

import (
	"slices"
	"testing"
	"time"
)

// mustDate parses YYYY-MM-DD or fails the test.
func mustDate(t *testing.T, s string) civil {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatalf("bad date in test: %v", err)
	}
	y, m, day := d.Date()
	return date(y, m, day)
}

func TestEaster(t *testing.T) {
	t.Parallel()
	// Easter Sunday as the churches' tables give it: 2008 and 2285 among the
	// earliest possible (March 22 and 23), 2038 the latest (April 25).
	tests := []struct {
		year int
		want string
	}{
		{2000, "2000-04-23"},
		{2001, "2001-04-15"},
		{2008, "2008-03-23"},
		{2011, "2011-04-24"},
		{2019, "2019-04-21"},
		{2024, "2024-03-31"},
		{2025, "2025-04-20"},
		{2026, "2026-04-05"},
		{2027, "2027-03-28"},
		{2038, "2038-04-25"},
		{2285, "2285-03-22"},
	}
	for _, tt := range tests {
		if got := easter(tt.year); got.String() != tt.want {
			t.Errorf("easter(%d) = %s, want %s", tt.year, got, tt.want)
		}
	}
}

func TestHolidayRules(t *testing.T) {
	t.Parallel()
	// want is the observed date, or "" when the holiday is not kept that year.
	tests := []struct {
		name string
		year int
		want string
	}{
		{"New Year's Day", 2024, "2024-01-01"},
		{"New Year's Day", 2023, "2023-01-02"}, // Sunday → Monday
		{"New Year's Day", 2017, "2017-01-02"},
		{"New Year's Day", 2022, ""}, // Saturday: 2021-12-31 traded (NYSE Rule 7.2)
		{"New Year's Day", 2028, ""},
		{"New Year's Day", 2011, ""},
		{"Martin Luther King Jr. Day", 2000, "2000-01-17"},
		{"Martin Luther King Jr. Day", 2025, "2025-01-20"},
		{"Martin Luther King Jr. Day", 2027, "2027-01-18"},
		{"Washington's Birthday", 2024, "2024-02-19"},
		{"Washington's Birthday", 2025, "2025-02-17"},
		{"Washington's Birthday", 2028, "2028-02-21"},
		{"Good Friday", 2024, "2024-03-29"},
		{"Good Friday", 2025, "2025-04-18"},
		{"Good Friday", 2027, "2027-03-26"},
		{"Good Friday", 2028, "2028-04-14"},
		{"Memorial Day", 2024, "2024-05-27"},
		{"Memorial Day", 2027, "2027-05-31"},
		{"Memorial Day", 2026, "2026-05-25"},
		{"Juneteenth", 2021, ""}, // not yet an exchange holiday
		{"Juneteenth", 2022, "2022-06-20"},
		{"Juneteenth", 2024, "2024-06-19"},
		{"Juneteenth", 2027, "2027-06-18"}, // Saturday → Friday
		{"Independence Day", 2024, "2024-07-04"},
		{"Independence Day", 2026, "2026-07-03"}, // Saturday → Friday
		{"Independence Day", 2027, "2027-07-05"}, // Sunday → Monday
		{"Independence Day", 2020, "2020-07-03"},
		{"Independence Day", 2010, "2010-07-05"},
		{"Labor Day", 2024, "2024-09-02"},
		{"Labor Day", 2026, "2026-09-07"},
		{"Labor Day", 2025, "2025-09-01"},
		{"Thanksgiving Day", 2024, "2024-11-28"},
		{"Thanksgiving Day", 2026, "2026-11-26"},
		{"Thanksgiving Day", 2027, "2027-11-25"},
		{"Christmas Day", 2024, "2024-12-25"},
		{"Christmas Day", 2021, "2021-12-24"}, // Saturday → Friday
		{"Christmas Day", 2022, "2022-12-26"}, // Sunday → Monday
		{"Christmas Day", 2027, "2027-12-24"},
	}
	for _, tt := range tests {
		got := ""
		for _, h := range holidays(tt.year) {
			if h.name == tt.name {
				got = h.date.String()
			}
		}
		if got != tt.want {
			t.Errorf("%s %d = %q, want %q", tt.name, tt.year, got, tt.want)
		}
	}
}

func TestHolidaysStayInTheirYear(t *testing.T) {
	t.Parallel()
	for y := FirstYear; y <= LastYear; y++ {
		hs := holidays(y)
		for i, h := range hs {
			if h.date.year != y {
				t.Errorf("%d: %s falls on %s", y, h.name, h.date)
			}
			if wd := h.date.weekday(); wd == time.Saturday || wd == time.Sunday {
				t.Errorf("%d: %s falls on a %s", y, h.name, wd)
			}
			if i > 0 && !hs[i-1].date.time().Before(h.date.time()) {
				t.Errorf("%d: %s (%s) not after %s (%s)", y, h.name, h.date, hs[i-1].name, hs[i-1].date)
			}
		}
	}
}

func TestEarlyCloseRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		year int
		want []string
	}{
		// July 4 on a Thursday before 2013: Friday July 5 closed early and
		// Wednesday July 3 was a full day.
		{2002, []string{"2002-07-05", "2002-11-29", "2002-12-24"}},
		{2013, []string{"2013-07-03", "2013-11-29", "2013-12-24"}},
		{2019, []string{"2019-07-03", "2019-11-29", "2019-12-24"}},
		{2008, []string{"2008-07-03", "2008-11-28", "2008-12-24"}},
		{2023, []string{"2023-07-03", "2023-11-24"}}, // December 24 a Sunday
		{2021, []string{"2021-11-26"}},               // July 3 a Saturday, December 24 the Christmas holiday
		{2026, []string{"2026-11-27", "2026-12-24"}}, // July 3 the Independence Day holiday
		{2027, []string{"2027-11-26"}},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range earlyCloses(tt.year) {
			got = append(got, c.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("earlyCloses(%d) = %q, want %q", tt.year, got, tt.want)
		}
	}
}

func TestNthAndLastWeekday(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got  civil
		want string
	}{
		{nthWeekday(2026, time.March, time.Sunday, 1), "2026-03-01"}, // the month starts on the weekday
		{nthWeekday(2026, time.March, time.Saturday, 1), "2026-03-07"},
		{nthWeekday(2024, time.February, time.Thursday, 5), "2024-02-29"},
		{lastWeekday(2026, time.May, time.Sunday), "2026-05-31"}, // the month ends on the weekday
		{lastWeekday(2026, time.May, time.Monday), "2026-05-25"},
		{lastWeekday(2024, time.December, time.Tuesday), "2024-12-31"},
	}
	for i, tt := range tests {
		if tt.got.String() != tt.want {
			t.Errorf("case %d = %s, want %s", i, tt.got, tt.want)
		}
	}
}

func TestOneOffTablesAreWeekdays(t *testing.T) {
	t.Parallel()
	all := slices.Clone(oneOffEarlyCloses)
	for _, h := range oneOffClosures {
		all = append(all, h.date)
	}
	for _, c := range all {
		if wd := c.weekday(); wd == time.Saturday || wd == time.Sunday || c.year < FirstYear || c.year > LastYear {
			t.Errorf("one-off day %s is a %s or out of range", c, wd)
		}
	}
}
