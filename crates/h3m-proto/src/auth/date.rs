//! HTTP dates (RFC 9110 §5.6.7) for freshness checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an IMF-fixdate, `Fri, 27 Nov 2026 15:41:59 GMT` (the form every
/// current sender writes; the obsolete RFC 850 and asctime forms are not
/// accepted). The weekday is not cross-checked.
pub fn parse_http_date(text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut parts = text.split(' ');
    let weekday = parts.next()?;
    if weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let day = num(parts.next()?, 2)?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year = num(parts.next()?, 4)?;
    let mut hms = parts.next()?.split(':');
    let (h, m, s) = (num(hms.next()?, 2)?, num(hms.next()?, 2)?, num(hms.next()?, 2)?);
    if hms.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Formats a time as an IMF-fixdate.
pub fn format_http_date(t: SystemTime) -> String {
    crate::sender::http_date(t)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for secs in [0u64, 951_782_400, 1_795_794_119, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_http_date(format_http_date(t).as_bytes()), Some(t), "{secs}");
        }
        assert_eq!(
            parse_http_date(b"Fri, 27 Nov 2026 15:41:59 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_794_119))
        );
        for bad in [
            &b"Fri, 27 Nov 2026 15:41:59 UTC"[..],
            b"Friday, 27-Nov-26 15:41:59 GMT",
            b"Fri Nov 27 15:41:59 2026",
            b"Fri, 27 Foo 2026 15:41:59 GMT",
            b"Fri, 7 Nov 2026 15:41:59 GMT",
            b"Fri, 27 Nov 2026 25:41:59 GMT",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse_http_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
