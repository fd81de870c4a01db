//! HTTP dates (RFC 9110 §5.6.7) for freshness checks.
//!
//! [`parse_http_date`] reads the three forms RFC 9110 requires recipients to
//! accept, plus the IMF-fixdate variant nghq writes:
//!
//! | form | example |
//! | --- | --- |
//! | IMF-fixdate | `Sun, 06 Nov 1994 08:49:37 GMT` |
//! | IMF-fixdate, day space-padded (nghq's strftime `%e`) | `Sun,  6 Nov 1994 08:49:37 GMT` |
//! | RFC 850 (obsolete) | `Sunday, 06-Nov-94 08:49:37 GMT` |
//! | ANSI C `asctime()` (obsolete) | `Sun Nov  6 08:49:37 1994` |
//!
//! Every form is fixed-width apart from the RFC 850 day name; day and month
//! names are case-sensitive. A date is refused unless it exists (no `31 Feb`,
//! no `29 Feb` outside leap years; second 60 is allowed for leap seconds), its
//! day name is the right one for it, and it is not before 1970. RFC 850's
//! two-digit years are read as 1970–2069: a parser without a clock cannot
//! apply RFC 9110's "not more than 50 years in the future" rule exactly, and
//! this window is what that rule gives in 2019 (it differs only for years
//! written `70` to `76` before 2027).
//!
//! Why not the `httpdate` crate: tried (1.0.3), it refuses nghq's
//! space-padded day (`Sun,  6 Dec 2026 04:37:53 GMT`, which every nghq
//! capture's `date` has from day 1 to 9 of a month) and a leap second
//! (`23:59:60`), so signed nghq pushes would be refused as `unreadable
//! signed date`. It does check impossible dates and day names, and reads
//! RFC 850 years as 1970–2069 like this module.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&[u8]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
/// Day names from Sunday, as `(day-name, day-name-l)`.
const DAYS: [(&str, &str); 7] = [
    ("Sun", "Sunday"),
    ("Mon", "Monday"),
    ("Tue", "Tuesday"),
    ("Wed", "Wednesday"),
    ("Thu", "Thursday"),
    ("Fri", "Friday"),
    ("Sat", "Saturday"),
];

/// A written form of an HTTP date (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpDateForm {
    /// `Sun, 06 Nov 1994 08:49:37 GMT`, the form senders must write.
    ImfFixdate,
    /// `Sun,  6 Nov 1994 08:49:37 GMT`: IMF-fixdate with the day padded with a
    /// space instead of a zero (strftime `%e`), as nghq writes it.
    SpacePaddedDay,
    /// `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit year, read as 1970–2069).
    Rfc850,
    /// `Sun Nov  6 08:49:37 1994`.
    Asctime,
}

/// Parses an HTTP date in any form of the module documentation (surrounding
/// ASCII whitespace ignored). `None` for anything else, for a date that does
/// not exist, for a wrong day name and for dates before 1970.
pub fn parse_http_date(text: &[u8]) -> Option<SystemTime> {
    let text = text.trim_ascii();
    let (weekday, fields) = if text.get(3) == Some(&b',') {
        // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` (or ` 6` for the day).
        let [
            w0,
            w1,
            w2,
            b',',
            b' ',
            d0,
            d1,
            b' ',
            m0,
            m1,
            m2,
            b' ',
            y0,
            y1,
            y2,
            y3,
            b' ',
            time @ ..,
            b' ',
            b'G',
            b'M',
            b'T',
        ] = text
        else {
            return None;
        };
        let fields = Fields {
            day: day(*d0, *d1)?,
            month: month(&[*m0, *m1, *m2])?,
            year: digits(&[*y0, *y1, *y2, *y3])?,
            time: time_of_day(time)?,
        };
        (DAYS.iter().position(|(short, _)| short.as_bytes() == [*w0, *w1, *w2])?, fields)
    } else if let Some(comma) = text.iter().position(|&b| b == b',') {
        // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`.
        let (name, rest) = text.split_at(comma);
        let [b',', b' ', d0, d1, b'-', m0, m1, m2, b'-', y0, y1, b' ', time @ .., b' ', b'G', b'M', b'T'] = rest else {
            return None;
        };
        let yy = digits(&[*y0, *y1])?;
        let fields = Fields {
            day: digits(&[*d0, *d1])?,
            month: month(&[*m0, *m1, *m2])?,
            year: if yy >= 70 { 1900 + yy } else { 2000 + yy },
            time: time_of_day(time)?,
        };
        (DAYS.iter().position(|(_, long)| long.as_bytes() == name)?, fields)
    } else {
        // asctime: `Sun Nov  6 08:49:37 1994`.
        let [w0, w1, w2, b' ', m0, m1, m2, b' ', d0, d1, b' ', time @ .., b' ', y0, y1, y2, y3] = text else {
            return None;
        };
        let fields = Fields {
            day: day(*d0, *d1)?,
            month: month(&[*m0, *m1, *m2])?,
            year: digits(&[*y0, *y1, *y2, *y3])?,
            time: time_of_day(time)?,
        };
        (DAYS.iter().position(|(short, _)| short.as_bytes() == [*w0, *w1, *w2])?, fields)
    };
    let Fields { day, month, year, time: (h, m, s) } = fields;
    if year < 1970 || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if weekday_of(days) != weekday {
        return None;
    }
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Formats a time as an IMF-fixdate (RFC 9110 §5.6.7), the form senders
/// write: `Fri, 27 Nov 2026 15:41:59 GMT` (times before 1970 as 1970-01-01).
pub fn format_http_date(t: SystemTime) -> String {
    format_http_date_as(t, HttpDateForm::ImfFixdate)
}

/// Formats a time in `form` (times before 1970 as 1970-01-01 00:00:00; RFC
/// 850 keeps only the last two digits of the year, so it round-trips only
/// for 1970–2069).
pub fn format_http_date_as(t: SystemTime, form: HttpDateForm) -> String {
    let secs = i64::try_from(unix_secs(t)).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (short, long) = DAYS[weekday_of(days)];
    let mon = std::str::from_utf8(MONTHS[(month - 1) as usize]).unwrap_or("???");
    let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    match form {
        HttpDateForm::ImfFixdate => format!("{short}, {day:02} {mon} {year} {time} GMT"),
        HttpDateForm::SpacePaddedDay => format!("{short}, {day:2} {mon} {year} {time} GMT"),
        HttpDateForm::Rfc850 => format!("{long}, {day:02}-{mon}-{:02} {time} GMT", year.rem_euclid(100)),
        HttpDateForm::Asctime => format!("{short} {mon} {day:2} {time} {year}"),
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct Fields {
    day: i64,
    month: i64,
    year: i64,
    time: (i64, i64, i64),
}

/// A number written with exactly these ASCII digits.
fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
}

/// A day of the month: two digits, or a space and one digit.
fn day(d0: u8, d1: u8) -> Option<i64> {
    if d0 == b' ' { digits(&[d1]) } else { digits(&[d0, d1]) }
}

/// A month number (1–12) from its case-sensitive name.
fn month(name: &[u8; 3]) -> Option<i64> {
    MONTHS.iter().position(|m| m == name).map(|i| i as i64 + 1)
}

/// `HH:MM:SS` (second 60 allowed, for leap seconds).
fn time_of_day(text: &[u8]) -> Option<(i64, i64, i64)> {
    let [h0, h1, b':', m0, m1, b':', s0, s1] = text else { return None };
    let (h, m, s) = (digits(&[*h0, *h1])?, digits(&[*m0, *m1])?, digits(&[*s0, *s1])?);
    (h <= 23 && m <= 59 && s <= 60).then_some((h, m, s))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The day of the week (0 Sunday) of a day since 1970-01-01 (a Thursday).
fn weekday_of(days: i64) -> usize {
    (days + 4).rem_euclid(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const FORMS: [HttpDateForm; 4] =
        [HttpDateForm::ImfFixdate, HttpDateForm::SpacePaddedDay, HttpDateForm::Rfc850, HttpDateForm::Asctime];

    #[test]
    fn round_trip() {
        for secs in [0u64, 951_782_400, 1_795_794_119, 4_102_444_799] {
            let t = at(secs);
            assert_eq!(parse_http_date(format_http_date(t).as_bytes()), Some(t), "{secs}");
        }
        assert_eq!(parse_http_date(b"Fri, 27 Nov 2026 15:41:59 GMT"), Some(at(1_795_794_119)));
        assert_eq!(format_http_date(at(1_795_794_119)), "Fri, 27 Nov 2026 15:41:59 GMT");
        assert_eq!(format_http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format_http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format_http_date(UNIX_EPOCH - Duration::from_secs(1)), "Thu, 01 Jan 1970 00:00:00 GMT");
        for bad in [
            &b"Fri, 27 Nov 2026 15:41:59 UTC"[..],
            b"Friday, 27-Nov-26 15:41:59 UTC",
            b"Fri Nov 27 15:41:59 26",
            b"Fri, 27 Foo 2026 15:41:59 GMT",
            b"Fri, 7 Nov 2026 15:41:59 GMT",
            b"Fri, 27 Nov 2026 25:41:59 GMT",
            b"Fri, 27 Nov 2026 15:60:59 GMT",
            b"Fri, 27 Nov 2026 15:41:61 GMT",
            b"Fri, 27 nov 2026 15:41:59 GMT",
            b"fri, 27 Nov 2026 15:41:59 GMT",
            b"Fri, 27 Nov 2026 15:41:59 GMT x",
            b"Fri,  27 Nov 2026 15:41:59 GMT",
            b"Fri, 2a Nov 2026 15:41:59 GMT",
            b"Fri, +7 Nov 2026 15:41:59 GMT",
            b"Fri, 27 Nov 2026 15:41:5 GMT",
            b"Fri, 00 Nov 2026 15:41:59 GMT",
            b"Fri, 27-Nov-26 15:41:59 GMT",
            b"Friday, 27 Nov 2026 15:41:59 GMT",
            b"Fri Nov 27 15:41:59 2026 GMT",
            b"Wed, 31 Dec 1969 23:59:59 GMT",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse_http_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// RFC 9110 §5.6.7's own examples: the three forms of one instant.
    #[test]
    fn rfc9110_examples_all_parse_to_one_instant() {
        let t = Some(at(784_111_777));
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(parse_http_date(b"Sun,  6 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"  Sun Nov  6 08:49:37 1994\t"), t);
        for form in FORMS {
            assert_eq!(parse_http_date(format_http_date_as(at(784_111_777), form).as_bytes()), t, "{form:?}");
        }
    }

    /// nghq writes the day with strftime `%e`: space-padded on days 1 to 9.
    #[test]
    fn nghq_space_padded_day() {
        let t = at(1_796_531_873);
        assert_eq!(parse_http_date(b"Sun,  6 Dec 2026 04:37:53 GMT"), Some(t));
        assert_eq!(format_http_date_as(t, HttpDateForm::SpacePaddedDay), "Sun,  6 Dec 2026 04:37:53 GMT");
        assert_eq!(format_http_date_as(t, HttpDateForm::ImfFixdate), "Sun, 06 Dec 2026 04:37:53 GMT");
        assert_eq!(format_http_date_as(t, HttpDateForm::Rfc850), "Sunday, 06-Dec-26 04:37:53 GMT");
        assert_eq!(format_http_date_as(t, HttpDateForm::Asctime), "Sun Dec  6 04:37:53 2026");
        // From day 10 on, `%e` is the same as IMF-fixdate.
        assert_eq!(parse_http_date(b"Thu, 10 Dec 2026 04:37:53 GMT"), Some(at(1_796_531_873 + 4 * 86_400)));
    }

    #[test]
    fn wrong_day_names_are_refused() {
        for bad in [
            &b"Mon, 06 Nov 1994 08:49:37 GMT"[..],
            b"Mon,  6 Nov 1994 08:49:37 GMT",
            b"Monday, 06-Nov-94 08:49:37 GMT",
            b"Sun, 06-Nov-94 08:49:37 GMT",
            b"Mon Nov  6 08:49:37 1994",
            b"Sunday Nov  6 08:49:37 1994",
            b"Sat,  6 Dec 2026 04:37:53 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn impossible_dates_are_refused_not_rolled_over() {
        for bad in [
            // 31 Feb 2026 would be 3 Mar 2026, a Tuesday.
            &b"Tue, 31 Feb 2026 12:00:00 GMT"[..],
            b"Tuesday, 31-Feb-26 12:00:00 GMT",
            b"Tue Feb 31 12:00:00 2026",
            // 29 Feb 2027 would be 1 Mar 2027, a Monday; 2100 is not a leap year.
            b"Mon, 29 Feb 2027 12:00:00 GMT",
            b"Mon, 29 Feb 2100 12:00:00 GMT",
            b"Sat, 31 Apr 2026 12:00:00 GMT",
            b"Thu, 31 Jun 2026 12:00:00 GMT",
            b"Thu, 31 Sep 2026 12:00:00 GMT",
            b"Tue, 31 Nov 2026 12:00:00 GMT",
            b"Mon, 32 Jan 2026 12:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_http_date(b"Tue, 03 Mar 2026 12:00:00 GMT"), Some(at(1_772_539_200)));
        // Leap days that exist, in every form.
        let leap = Some(at(1_835_438_400));
        assert_eq!(parse_http_date(b"Tue, 29 Feb 2028 12:00:00 GMT"), leap);
        assert_eq!(parse_http_date(b"Tuesday, 29-Feb-28 12:00:00 GMT"), leap);
        assert_eq!(parse_http_date(b"Tue Feb 29 12:00:00 2028"), leap);
        assert_eq!(parse_http_date(b"Tue, 29 Feb 2000 12:00:00 GMT"), Some(at(951_825_600)));
        // A leap second is the next minute's first second.
        assert_eq!(parse_http_date(b"Wed, 31 Dec 2025 23:59:60 GMT"), Some(at(1_767_225_600)));
    }

    #[test]
    fn rfc850_two_digit_years() {
        assert_eq!(parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT"), Some(at(0)));
        assert_eq!(parse_http_date(b"Tuesday, 31-Dec-69 23:59:59 GMT"), Some(at(3_155_759_999)));
        assert_eq!(parse_http_date(b"Wednesday, 31-Dec-69 23:59:59 GMT"), None, "31 Dec 1969 was a Wednesday");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Every form round-trips over its whole range (RFC 850 to 2069,
        /// the others to 9999), and IMF-fixdate is the sender's format.
        #[test]
        fn every_form_round_trips(secs in 0u64..253_402_300_800, form in 0usize..4) {
            let form = FORMS[form];
            let secs = if form == HttpDateForm::Rfc850 { secs % 3_155_760_000 } else { secs };
            let t = at(secs);
            let text = format_http_date_as(t, form);
            prop_assert_eq!(parse_http_date(text.as_bytes()), Some(t), "{}", text);
            prop_assert_eq!(format_http_date_as(t, HttpDateForm::ImfFixdate), format_http_date(t));
        }

        /// Any other day name for the same date is refused.
        #[test]
        fn every_wrong_day_name_is_refused(secs in 0u64..4_102_444_800, form in 0usize..4, shift in 1usize..7) {
            let form = FORMS[form];
            let secs = if form == HttpDateForm::Rfc850 { secs % 3_155_760_000 } else { secs };
            let text = format_http_date_as(at(secs), form);
            let right = DAYS[weekday_of((secs / 86_400) as i64)];
            let wrong = DAYS[(weekday_of((secs / 86_400) as i64) + shift) % 7];
            let forged = if form == HttpDateForm::Rfc850 {
                text.replacen(right.1, wrong.1, 1)
            } else {
                text.replacen(right.0, wrong.0, 1)
            };
            prop_assert_eq!(parse_http_date(forged.as_bytes()), None, "{}", forged);
        }

        /// A day past the end of its month is refused in every form.
        #[test]
        fn days_past_the_month_end_are_refused(year in 1970i64..2100, month in 1i64..=12, over in 1i64..=3, form in 0usize..4) {
            let form = FORMS[form];
            let year = if form == HttpDateForm::Rfc850 { 1970 + (year - 1970) % 100 } else { year };
            let last = days_in_month(year, month);
            // Write the last valid day, then move only its day-of-month digits.
            let t = at((days_from_civil(year, month, last) * 86_400) as u64);
            let text = format_http_date_as(t, form);
            let (from, to) = match form {
                HttpDateForm::SpacePaddedDay | HttpDateForm::Asctime => (format!("{last:2} "), format!("{:2} ", last + over)),
                HttpDateForm::Rfc850 => (format!("{last:02}-"), format!("{:02}-", last + over)),
                HttpDateForm::ImfFixdate => (format!("{last:02} "), format!("{:02} ", last + over)),
            };
            // The day name is also made right for the rolled-over date, so only the day is wrong.
            let rolled = days_from_civil(year, month, last) + over;
            let (old_name, new_name) = (DAYS[weekday_of(rolled - over)], DAYS[weekday_of(rolled)]);
            let names = if form == HttpDateForm::Rfc850 { (old_name.1, new_name.1) } else { (old_name.0, new_name.0) };
            let forged = text.replacen(&from, &to, 1).replacen(names.0, names.1, 1);
            prop_assert_ne!(&forged, &text);
            prop_assert_eq!(parse_http_date(forged.as_bytes()), None, "{}", forged);
        }
    }
}
