//! Time: the `--time-step` ([`TimeStep`]), calendar-aligned time bins ([`TimeBin`], [`time_bins`]),
//! the solar day of an acquisition ([`solar_day`]) and the Zarr `time` coordinate
//! ([`days_since_epoch`]).
//!
//! Owns: the rules of DESIGN section 3 about dates (bin alignment, bin labels, clipping a bin to the
//! user's range, the solar-day key). Must not touch: STAC requests (that is `catalog`, which takes
//! the UTC interval from [`SearchWindow::utc_interval`]), pixels, or the store.
//!
//! All dates are proleptic Gregorian calendar dates ([`Date`]); all instants are UTC.
//!
//! Bins are made of *solar days*, not of UTC instants: an acquisition belongs to the bin that holds
//! its solar day. Near the antimeridian the solar day and the UTC date differ (at longitude 170 a
//! 10:30 local overpass is at 23:10 UTC the day before), so the UTC search interval of a bin is the
//! clipped day range shifted by the chunk's solar offset (see [`SearchWindow`]). That way every
//! solar day is used by exactly one bin, and the days outside `[start, end]` by none.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A calendar date (no time zone).
pub type Date = NaiveDate;

/// What can go wrong with time steps and time ranges.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error(
        "invalid time step {given:?}: {reason}; give a count n >= 1 followed by D (days), M (months) or Y (years), \
         e.g. 1M (monthly, the default), 3M, 16D or 1Y"
    )]
    InvalidStep { given: String, reason: &'static str },
    #[error("time range starts after it ends ({start} > {end}); give the start date first")]
    StartAfterEnd { start: Date, end: Date },
    #[error("time bin after {after} with step {step} is outside the supported calendar; give a smaller range or step")]
    OutOfCalendar { after: Date, step: TimeStep },
}

/// The unit of a [`TimeStep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Day,
    Month,
    Year,
}

impl TimeUnit {
    fn letter(self) -> char {
        match self {
            TimeUnit::Day => 'D',
            TimeUnit::Month => 'M',
            TimeUnit::Year => 'Y',
        }
    }
}

/// The length of one time bin: `n` days, months or years (`"16D"`, `"1M"`, `"3M"`, `"1Y"`).
///
/// Parsed from the CLI form with [`FromStr`]; the unit letter is case-insensitive and `n >= 1` is
/// required (there is no implicit 1: `"M"` is refused, so a typo never silently means monthly).
/// Serializes as its canonical string (`"3M"`), so TOML files and CLI flags look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeStep {
    n: u32,
    unit: TimeUnit,
}

impl TimeStep {
    /// `n` units; `None` if `n == 0`.
    pub fn new(n: u32, unit: TimeUnit) -> Option<Self> {
        (n >= 1).then_some(Self { n, unit })
    }

    /// One calendar month, the default of DESIGN section 3.
    pub const MONTHLY: Self = Self { n: 1, unit: TimeUnit::Month };

    pub fn n(&self) -> u32 {
        self.n
    }

    pub fn unit(&self) -> TimeUnit {
        self.unit
    }

    /// The first day of the bin that contains `date` when bins are anchored at `date` itself
    /// (days), at the 1st of its month (months) or at Jan 1 of its year (years).
    fn anchor(&self, date: Date) -> Date {
        match self.unit {
            TimeUnit::Day => date,
            // `with_day(1)` / `with_ordinal(1)` cannot fail: every month has a 1st, every year a Jan 1.
            TimeUnit::Month => date.with_day(1).unwrap_or(date),
            TimeUnit::Year => date.with_ordinal(1).unwrap_or(date),
        }
    }

    /// `date` plus one step, or `None` past the end of chrono's calendar (year 262142).
    fn add_to(&self, date: Date) -> Option<Date> {
        match self.unit {
            TimeUnit::Day => date.checked_add_days(Days::new(u64::from(self.n))),
            TimeUnit::Month => date.checked_add_months(Months::new(self.n)),
            TimeUnit::Year => date.checked_add_months(Months::new(self.n.checked_mul(12)?)),
        }
    }
}

impl Default for TimeStep {
    fn default() -> Self {
        Self::MONTHLY
    }
}

impl fmt::Display for TimeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.n, self.unit.letter())
    }
}

impl FromStr for TimeStep {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TimeError::InvalidStep { given: s.to_string(), reason };
        let t = s.trim();
        let Some(last) = t.chars().last() else {
            return Err(bad("it is empty"));
        };
        let unit = match last.to_ascii_uppercase() {
            'D' => TimeUnit::Day,
            'M' => TimeUnit::Month,
            'Y' => TimeUnit::Year,
            _ => return Err(bad("the unit must be D, M or Y")),
        };
        let digits = &t[..t.len() - last.len_utf8()];
        if digits.is_empty() {
            return Err(bad("the count is missing"));
        }
        // `u32::from_str` would accept a leading '+'; only plain digits are a count.
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the count must be a whole number"));
        }
        let n: u32 = digits.parse().map_err(|_| bad("the count is too large"))?;
        Self::new(n, unit).ok_or_else(|| bad("the count must be at least 1"))
    }
}

impl TryFrom<String> for TimeStep {
    type Error = TimeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TimeStep> for String {
    fn from(step: TimeStep) -> Self {
        step.to_string()
    }
}

/// One time bin: the half-open day range `[start, end_exclusive)`. Its label (the `time`
/// coordinate of the cube) is `start`, even when the user's range starts later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeBin {
    pub start: Date,
    pub end_exclusive: Date,
}

impl TimeBin {
    /// The label of the bin in the cube: its start date.
    pub fn label(&self) -> Date {
        self.start
    }

    /// The days of this bin that are inside the user's range `[range_start, range_end_inclusive]`,
    /// or `None` if there are none. Scenes are searched and used only for these days.
    pub fn search_window(&self, range_start: Date, range_end_inclusive: Date) -> Option<SearchWindow> {
        let first = self.start.max(range_start);
        let last = self.end_exclusive.pred_opt()?.min(range_end_inclusive);
        (first <= last).then_some(SearchWindow { first, last })
    }
}

/// The solar days `[first, last]` (both inclusive) whose acquisitions feed one bin: the bin
/// clipped to the user's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SearchWindow {
    pub first: Date,
    pub last: Date,
}

impl SearchWindow {
    /// Whether an acquisition at `datetime` seen from a chunk centred at longitude `lon_center`
    /// belongs here, i.e. whether its [`solar_day`] is in `[first, last]`.
    pub fn contains(&self, datetime: DateTime<Utc>, lon_center: f64) -> bool {
        let day = solar_day(datetime, lon_center);
        self.first <= day && day <= self.last
    }

    /// The UTC instants `[start, end_exclusive)` whose solar day at `lon_center` is in this
    /// window. This is exact (the solar offset is a whole number of hours), so a STAC search over
    /// it returns every scene of the window and nothing of a neighbouring bin; the caller still
    /// checks [`contains`](Self::contains) because catalogs compare datetimes inclusively.
    pub fn utc_interval(&self, lon_center: f64) -> (DateTime<Utc>, DateTime<Utc>) {
        let shift = TimeDelta::hours(solar_offset_hours(lon_center));
        // Shifted midnight of `d`; saturating at chrono's ends keeps this total for any date.
        let at = |d: Option<Date>| d.and_then(|d| d.and_time(NaiveTime::MIN).and_utc().checked_sub_signed(shift));
        let start = at(Some(self.first)).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let end = at(self.last.succ_opt()).unwrap_or(DateTime::<Utc>::MAX_UTC);
        (start, end)
    }

    /// The STAC API `datetime` parameter for [`utc_interval`](Self::utc_interval): RFC 3339 UTC,
    /// `start/end` with both ends inclusive as the API defines them (end = exclusive end - 1 ms).
    pub fn stac_datetime(&self, lon_center: f64) -> String {
        let (start, end) = self.utc_interval(lon_center);
        let end = end - TimeDelta::milliseconds(1);
        format!("{}/{}", start.format("%Y-%m-%dT%H:%M:%SZ"), end.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// The calendar-aligned bins that cover `[start, end_inclusive]` (DESIGN section 3).
///
/// The first bin is the one that contains `start`: for `nM` it starts on the 1st of `start`'s
/// month, for `nY` on Jan 1 of `start`'s year, for `nD` on `start` itself. Following bins start one
/// step later each, up to the bin that contains `end_inclusive`. So `3M` from 2020-02-10 gives
/// Feb-Apr, May-Jul, ... (aligned on the start month, not on calendar quarters).
pub fn time_bins(start: Date, end_inclusive: Date, step: TimeStep) -> Result<Vec<TimeBin>, TimeError> {
    if start > end_inclusive {
        return Err(TimeError::StartAfterEnd { start, end: end_inclusive });
    }
    let mut bins = Vec::new();
    let mut bin_start = step.anchor(start);
    while bin_start <= end_inclusive {
        let end_exclusive = step.add_to(bin_start).ok_or(TimeError::OutOfCalendar { after: bin_start, step })?;
        bins.push(TimeBin { start: bin_start, end_exclusive });
        bin_start = end_exclusive;
    }
    Ok(bins)
}

/// The solar-day key of DESIGN section 3: the UTC date of `datetime + trunc(lon_center / 15)`
/// hours, `lon_center` being the longitude (degrees) of the chunk centre.
///
/// Longitudes outside [-180, 180] are wrapped into (-180, 180] first; a non-finite longitude counts
/// as 0 (the UTC date), which keeps this total without hiding a real longitude.
pub fn solar_day(datetime: DateTime<Utc>, lon_center: f64) -> Date {
    // `DateTime + TimeDelta` only panics beyond chrono's range (year 262142), which a satellite
    // acquisition never is; `checked_add_signed` keeps the function total anyway.
    let shifted = datetime.checked_add_signed(TimeDelta::hours(solar_offset_hours(lon_center))).unwrap_or(datetime);
    shifted.date_naive()
}

/// `trunc(lon / 15)` in [-12, 12], with the wrapping rules of [`solar_day`].
fn solar_offset_hours(lon_center: f64) -> i64 {
    if !lon_center.is_finite() {
        return 0;
    }
    let mut lon = lon_center;
    if lon.abs() > 180.0 {
        // Into (-180, 180]: 190 -> -170, -190 -> 170.
        lon = 180.0 - (180.0 - lon).rem_euclid(360.0);
    }
    (lon / 15.0).trunc() as i64
}

/// Days since 1970-01-01 (`Date::default()`), the value of the Zarr `time` coordinate
/// (`units = "days since 1970-01-01"`, `calendar = "proleptic_gregorian"`).
pub fn days_since_epoch(date: Date) -> i64 {
    (date - Date::default()).num_days()
}

/// The date `days` after 1970-01-01 (the inverse of [`days_since_epoch`]); `None` outside
/// chrono's calendar.
pub fn date_of_days(days: i64) -> Option<Date> {
    Date::default().checked_add_signed(TimeDelta::try_days(days)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Date {
        Date::from_ymd_opt(y, m, day).unwrap()
    }

    fn dt(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn bin(a: Date, b: Date) -> TimeBin {
        TimeBin { start: a, end_exclusive: b }
    }

    #[test]
    fn parses_valid_steps_case_insensitively() {
        for (s, n, unit) in [
            ("1M", 1, TimeUnit::Month),
            ("3m", 3, TimeUnit::Month),
            ("16D", 16, TimeUnit::Day),
            ("16d", 16, TimeUnit::Day),
            ("1Y", 1, TimeUnit::Year),
            (" 2y ", 2, TimeUnit::Year),
            ("012M", 12, TimeUnit::Month),
        ] {
            let step: TimeStep = s.parse().unwrap();
            assert_eq!((step.n(), step.unit()), (n, unit), "{s}");
        }
        assert_eq!("3m".parse::<TimeStep>().unwrap().to_string(), "3M");
        assert_eq!(TimeStep::default(), "1M".parse().unwrap());
    }

    #[test]
    fn refuses_bad_steps_and_says_what_is_valid() {
        for s in ["", "M", "0M", "-1M", "+1M", "1W", "1", "1.5M", "1 M", "M1", "99999999999D", "1MM", "１M"] {
            let err = s.parse::<TimeStep>().unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, TimeError::InvalidStep { .. }), "{s}");
            assert!(msg.contains(&format!("{s:?}")), "message names the input: {msg}");
            assert!(msg.contains("1M") && msg.contains("16D") && msg.contains("1Y"), "{msg}");
        }
    }

    #[test]
    fn time_step_serializes_as_its_string() {
        let step: TimeStep = serde_json::from_str("\"16d\"").unwrap();
        assert_eq!(serde_json::to_string(&step).unwrap(), "\"16D\"");
        assert!(serde_json::from_str::<TimeStep>("\"0M\"").is_err());
    }

    #[test]
    fn monthly_bins_across_a_year_end() {
        let bins = time_bins(d(2020, 11, 1), d(2021, 2, 28), TimeStep::MONTHLY).unwrap();
        assert_eq!(
            bins,
            vec![
                bin(d(2020, 11, 1), d(2020, 12, 1)),
                bin(d(2020, 12, 1), d(2021, 1, 1)),
                bin(d(2021, 1, 1), d(2021, 2, 1)),
                bin(d(2021, 2, 1), d(2021, 3, 1)),
            ]
        );
    }

    #[test]
    fn leap_year_february_has_29_days() {
        let bins = time_bins(d(2020, 2, 10), d(2020, 2, 29), TimeStep::MONTHLY).unwrap();
        assert_eq!(bins, vec![bin(d(2020, 2, 1), d(2020, 3, 1))]);
        let w = bins[0].search_window(d(2020, 2, 10), d(2020, 2, 29)).unwrap();
        assert_eq!((w.first, w.last), (d(2020, 2, 10), d(2020, 2, 29)));
        // 16-day bins cross Feb 29 in a leap year: Feb 20 + 16 days = Mar 7 (not Mar 8).
        let bins = time_bins(d(2020, 2, 20), d(2020, 3, 10), "16D".parse().unwrap()).unwrap();
        assert_eq!(bins, vec![bin(d(2020, 2, 20), d(2020, 3, 7)), bin(d(2020, 3, 7), d(2020, 3, 23))]);
        let bins = time_bins(d(2021, 2, 20), d(2021, 3, 10), "16D".parse().unwrap()).unwrap();
        assert_eq!(bins[0], bin(d(2021, 2, 20), d(2021, 3, 8)));
    }

    #[test]
    fn start_not_on_the_first_is_labelled_by_the_month_but_searched_from_the_start() {
        let (start, end) = (d(2020, 1, 15), d(2020, 3, 10));
        let bins = time_bins(start, end, TimeStep::MONTHLY).unwrap();
        let labels: Vec<Date> = bins.iter().map(TimeBin::label).collect();
        assert_eq!(labels, vec![d(2020, 1, 1), d(2020, 2, 1), d(2020, 3, 1)]);
        let windows: Vec<(Date, Date)> =
            bins.iter().map(|b| b.search_window(start, end).map(|w| (w.first, w.last)).unwrap()).collect();
        assert_eq!(
            windows,
            vec![(d(2020, 1, 15), d(2020, 1, 31)), (d(2020, 2, 1), d(2020, 2, 29)), (d(2020, 3, 1), d(2020, 3, 10))]
        );
        // A bin entirely outside the user's range has no window.
        assert_eq!(bin(d(2020, 4, 1), d(2020, 5, 1)).search_window(start, end), None);
    }

    #[test]
    fn n_month_bins_align_on_the_start_month() {
        let bins = time_bins(d(2020, 2, 10), d(2020, 12, 31), "3M".parse().unwrap()).unwrap();
        let starts: Vec<Date> = bins.iter().map(|b| b.start).collect();
        assert_eq!(starts, vec![d(2020, 2, 1), d(2020, 5, 1), d(2020, 8, 1), d(2020, 11, 1)]);
        assert_eq!(bins[3].end_exclusive, d(2021, 2, 1));
    }

    #[test]
    fn yearly_bins_start_on_jan_1() {
        let bins = time_bins(d(2019, 6, 30), d(2021, 1, 1), "1Y".parse().unwrap()).unwrap();
        assert_eq!(
            bins,
            vec![
                bin(d(2019, 1, 1), d(2020, 1, 1)),
                bin(d(2020, 1, 1), d(2021, 1, 1)),
                bin(d(2021, 1, 1), d(2022, 1, 1)),
            ]
        );
        let bins = time_bins(d(2019, 6, 30), d(2023, 1, 1), "2Y".parse().unwrap()).unwrap();
        let starts: Vec<Date> = bins.iter().map(|b| b.start).collect();
        assert_eq!(starts, vec![d(2019, 1, 1), d(2021, 1, 1), d(2023, 1, 1)]);
    }

    #[test]
    fn day_bins_start_at_the_start_date_and_cross_year_ends() {
        let bins = time_bins(d(2020, 12, 20), d(2021, 1, 20), "16D".parse().unwrap()).unwrap();
        assert_eq!(bins, vec![bin(d(2020, 12, 20), d(2021, 1, 5)), bin(d(2021, 1, 5), d(2021, 1, 21))]);
        // The end date is inclusive: one more day opens a third bin.
        let bins = time_bins(d(2020, 12, 20), d(2021, 1, 21), "16D".parse().unwrap()).unwrap();
        assert_eq!(bins.len(), 3);
        assert_eq!(bins[2], bin(d(2021, 1, 21), d(2021, 2, 6)));
        assert_eq!(time_bins(d(2020, 12, 20), d(2020, 12, 20), "1D".parse().unwrap()).unwrap().len(), 1);
    }

    #[test]
    fn bins_tile_the_range_without_gaps() {
        for step in ["1M", "3M", "7D", "1Y"] {
            let step: TimeStep = step.parse().unwrap();
            let (start, end) = (d(2019, 5, 17), d(2022, 8, 3));
            let bins = time_bins(start, end, step).unwrap();
            assert!(bins[0].start <= start && start < bins[0].end_exclusive);
            let last = bins.last().unwrap();
            assert!(last.start <= end && end < last.end_exclusive);
            for w in bins.windows(2) {
                assert_eq!(w[0].end_exclusive, w[1].start);
            }
        }
    }

    #[test]
    fn start_after_end_is_an_error() {
        let err = time_bins(d(2020, 2, 1), d(2020, 1, 31), TimeStep::MONTHLY).unwrap_err();
        assert_eq!(err, TimeError::StartAfterEnd { start: d(2020, 2, 1), end: d(2020, 1, 31) });
        assert!(err.to_string().contains("2020-02-01 > 2020-01-31"));
    }

    #[test]
    fn bins_past_the_calendar_are_an_error_not_a_panic() {
        let step = TimeStep::new(u32::MAX, TimeUnit::Year).unwrap();
        assert!(matches!(time_bins(d(2020, 1, 1), d(2020, 1, 1), step), Err(TimeError::OutOfCalendar { .. })));
    }

    #[test]
    fn solar_day_across_utc_midnight_at_plus_minus_170() {
        // lon 170: +11 h. 10:30 local is 23:30 UTC the day before.
        assert_eq!(solar_day(dt("2020-01-31T23:30:00Z"), 170.0), d(2020, 2, 1));
        assert_eq!(solar_day(dt("2020-01-31T12:59:59Z"), 170.0), d(2020, 1, 31));
        assert_eq!(solar_day(dt("2020-01-31T13:00:00Z"), 170.0), d(2020, 2, 1));
        // lon -170: -11 h.
        assert_eq!(solar_day(dt("2020-01-01T10:59:59Z"), -170.0), d(2019, 12, 31));
        assert_eq!(solar_day(dt("2020-01-01T11:00:00Z"), -170.0), d(2020, 1, 1));
        // trunc, not floor: -14.9 degrees is 0 h, 14.9 is 0 h, 15 is 1 h.
        assert_eq!(solar_day(dt("2020-01-01T23:30:00Z"), 14.9), d(2020, 1, 1));
        assert_eq!(solar_day(dt("2020-01-01T00:30:00Z"), -14.9), d(2020, 1, 1));
        assert_eq!(solar_day(dt("2020-01-01T23:30:00Z"), 15.0), d(2020, 1, 2));
        // Wrapping and non-finite longitudes.
        assert_eq!(solar_day(dt("2020-01-01T10:30:00Z"), 190.0), solar_day(dt("2020-01-01T10:30:00Z"), -170.0));
        assert_eq!(solar_day(dt("2020-01-01T23:30:00Z"), f64::NAN), d(2020, 1, 1));
    }

    #[test]
    fn utc_interval_is_the_solar_day_window_shifted() {
        let w = SearchWindow { first: d(2020, 1, 15), last: d(2020, 1, 31) };
        assert_eq!(w.utc_interval(0.0), (dt("2020-01-15T00:00:00Z"), dt("2020-02-01T00:00:00Z")));
        assert_eq!(w.utc_interval(170.0), (dt("2020-01-14T13:00:00Z"), dt("2020-01-31T13:00:00Z")));
        assert_eq!(w.utc_interval(-170.0), (dt("2020-01-15T11:00:00Z"), dt("2020-02-01T11:00:00Z")));
        assert_eq!(w.stac_datetime(170.0), "2020-01-14T13:00:00Z/2020-01-31T12:59:59.999Z");
        // Total at the ends of the calendar.
        let all = SearchWindow { first: Date::MIN, last: Date::MAX };
        assert_eq!(all.utc_interval(170.0).1, DateTime::<Utc>::MAX_UTC);
        assert_eq!(all.utc_interval(170.0).0, DateTime::<Utc>::MIN_UTC);
        // The interval and `contains` agree on both sides of each end.
        for lon in [-179.9, -170.0, -7.0, 0.0, 44.0, 170.0, 180.0] {
            let (a, b) = w.utc_interval(lon);
            let eps = TimeDelta::milliseconds(1);
            assert!(w.contains(a, lon) && !w.contains(a - eps, lon), "{lon}");
            assert!(w.contains(b - eps, lon) && !w.contains(b, lon), "{lon}");
        }
    }

    #[test]
    fn date_of_days_inverts_days_since_epoch() {
        for d in [Date::default(), Date::from_ymd_opt(2024, 5, 1).unwrap(), Date::from_ymd_opt(1969, 12, 31).unwrap()] {
            assert_eq!(date_of_days(days_since_epoch(d)), Some(d));
        }
        assert_eq!(date_of_days(i64::MAX), None);
    }

    #[test]
    fn days_since_epoch_for_the_time_coordinate() {
        assert_eq!(days_since_epoch(d(1970, 1, 1)), 0);
        assert_eq!(days_since_epoch(d(1969, 12, 31)), -1);
        assert_eq!(days_since_epoch(d(2020, 1, 1)), 18262);
        assert_eq!(days_since_epoch(d(2020, 3, 1)), 18322);
    }
}
