//! The few HTTP fields a repair exchange needs, parsed strictly: `Range`
//! (RFC 9110 §14.2, one range of bytes), `Content-Range` (§14.4) and
//! `Retry-After` (§10.2.3, delay-seconds).
//!
//! Only single ranges are served and asked for: a receiver's gaps are asked
//! for one request each (HTTP/3 requests are cheap and run side by side), so
//! no `multipart/byteranges` body is ever needed.

use std::ops::Range;
use std::time::Duration;

/// Why a `Range` or `Content-Range` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=…` (another unit, or no `=`).
    #[error("not a byte range")]
    NotBytes,
    /// More than one range was asked for.
    #[error("more than one range")]
    MultipleRanges,
    /// A number is missing, not decimal, or too large.
    #[error("malformed range")]
    Malformed,
    /// The last byte comes before the first.
    #[error("the range ends before it starts")]
    Backwards,
}

/// One range of a `Range: bytes=…` request field, before it meets a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both inclusive.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// A decimal number of at most 19 digits (always fits a `u64`).
fn number(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map_err(|_| RangeError::Malformed)
}

impl ByteRange {
    /// Parses a `Range` field value holding one byte range.
    pub fn parse(value: &str) -> Result<ByteRange, RangeError> {
        let (unit, set) = value.trim().split_once('=').ok_or(RangeError::NotBytes)?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Err(RangeError::NotBytes);
        }
        if set.contains(',') {
            return Err(RangeError::MultipleRanges);
        }
        let (first, last) = set.trim().split_once('-').ok_or(RangeError::Malformed)?;
        match (first.is_empty(), last.is_empty()) {
            (true, true) => Err(RangeError::Malformed),
            (true, false) => Ok(ByteRange::Suffix(number(last)?)),
            (false, true) => Ok(ByteRange::From(number(first)?)),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                if b < a {
                    return Err(RangeError::Backwards);
                }
                Ok(ByteRange::FromTo(a, b))
            }
        }
    }

    /// The field value asking for `range` (`bytes=a-b`), or for everything
    /// from `range.start` when `range.end` is `u64::MAX` (`bytes=a-`).
    /// `None` for an empty range.
    pub fn header_value(range: &Range<u64>) -> Option<String> {
        if range.end <= range.start {
            return None;
        }
        Some(if range.end == u64::MAX {
            format!("bytes={}-", range.start)
        } else {
            format!("bytes={}-{}", range.start, range.end - 1)
        })
    }

    /// The bytes this asks for of a body of `len` bytes; `None` when none of
    /// them exist (a `416` answer).
    pub fn resolve(self, len: u64) -> Option<Range<u64>> {
        let r = match self {
            ByteRange::FromTo(a, b) => a..b.saturating_add(1).min(len),
            ByteRange::From(a) => a..len,
            ByteRange::Suffix(n) => len.saturating_sub(n)..len,
        };
        (r.start < r.end).then_some(r)
    }
}

/// A parsed `Content-Range: bytes first-last/complete` (the complete length
/// may be `*`, unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRange {
    /// The bytes the response carries.
    pub range: Range<u64>,
    /// The representation's whole length, if given.
    pub complete: Option<u64>,
}

impl ContentRange {
    /// Parses a `Content-Range` value of a `206` response.
    pub fn parse(value: &str) -> Result<ContentRange, RangeError> {
        let rest = value.trim();
        let rest = rest.strip_prefix("bytes ").ok_or(RangeError::NotBytes)?;
        let (span, complete) = rest.split_once('/').ok_or(RangeError::Malformed)?;
        let complete = match complete {
            "*" => None,
            n => Some(number(n)?),
        };
        let (a, b) = span.split_once('-').ok_or(RangeError::Malformed)?;
        let (a, b) = (number(a)?, number(b)?);
        if b < a {
            return Err(RangeError::Backwards);
        }
        if complete.is_some_and(|c| b >= c) {
            return Err(RangeError::Malformed);
        }
        Ok(ContentRange { range: a..b + 1, complete })
    }

    /// The field value for `range` of a body of `complete` bytes (`None`:
    /// still growing, `*`).
    pub fn header_value(range: &Range<u64>, complete: Option<u64>) -> String {
        let total = complete.map_or_else(|| "*".to_owned(), |c| c.to_string());
        format!("bytes {}-{}/{total}", range.start, range.end.saturating_sub(1))
    }
}

/// The longest `Retry-After` a client honours (a longer one is cut to it).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` value in delay-seconds, capped at [`MAX_RETRY_AFTER`];
/// `None` for anything else (an HTTP-date is not trusted: clocks differ).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs = number(value.trim()).ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_of_every_form() {
        assert_eq!(ByteRange::parse("bytes=0-99"), Ok(ByteRange::FromTo(0, 99)));
        assert_eq!(ByteRange::parse(" Bytes = 5- "), Ok(ByteRange::From(5)));
        assert_eq!(ByteRange::parse("bytes=-20"), Ok(ByteRange::Suffix(20)));
        assert_eq!(ByteRange::parse("bytes=0-1,5-6"), Err(RangeError::MultipleRanges));
        assert_eq!(ByteRange::parse("items=0-1"), Err(RangeError::NotBytes));
        assert_eq!(ByteRange::parse("bytes=9-3"), Err(RangeError::Backwards));
        assert_eq!(ByteRange::parse("bytes=-"), Err(RangeError::Malformed));
        assert_eq!(ByteRange::parse("bytes=+1-2"), Err(RangeError::Malformed));
        assert_eq!(ByteRange::parse("bytes=99999999999999999999-"), Err(RangeError::Malformed));
        assert_eq!(ByteRange::FromTo(10, 1000).resolve(100), Some(10..100));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::Suffix(1000).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(ByteRange::header_value(&(3..7)).as_deref(), Some("bytes=3-6"));
        assert_eq!(ByteRange::header_value(&(3..u64::MAX)).as_deref(), Some("bytes=3-"));
        assert_eq!(ByteRange::header_value(&(3..3)), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(ContentRange::parse("bytes 0-9/100"), Ok(ContentRange { range: 0..10, complete: Some(100) }));
        assert_eq!(ContentRange::parse("bytes 5-5/*"), Ok(ContentRange { range: 5..6, complete: None }));
        assert_eq!(ContentRange::parse("bytes 0-100/100"), Err(RangeError::Malformed));
        assert_eq!(ContentRange::parse("bytes */100"), Err(RangeError::Malformed));
        assert_eq!(ContentRange::parse("items 0-1/2"), Err(RangeError::NotBytes));
        assert_eq!(ContentRange::header_value(&(0..10), Some(100)), "bytes 0-9/100");
        assert_eq!(ContentRange::header_value(&(0..10), None), "bytes 0-9/*");
    }

    #[test]
    fn retry_after_in_seconds_only() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs(s in ".{0,40}") {
            let _ = ByteRange::parse(&s);
            let _ = ContentRange::parse(&s);
            let _ = parse_retry_after(&s);
        }

        #[test]
        fn ranges_round_trip(start in 0u64..1 << 40, len in 1u64..1 << 30, total in 0u64..1 << 41) {
            let r = start..start + len;
            let value = ByteRange::header_value(&r).unwrap();
            let parsed = ByteRange::parse(&value).unwrap();
            prop_assert_eq!(parsed, ByteRange::FromTo(r.start, r.end - 1));
            let resolved = parsed.resolve(total);
            prop_assert_eq!(resolved.clone(), (r.start < total).then(|| r.start..r.end.min(total)));
            if let Some(res) = resolved {
                let cr = ContentRange::parse(&ContentRange::header_value(&res, Some(total))).unwrap();
                prop_assert_eq!(cr, ContentRange { range: res, complete: Some(total) });
            }
        }
    }
}
