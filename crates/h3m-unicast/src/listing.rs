//! The origin's list of the session's pushes, served at [`LISTING_PATH`]:
//! which push ID carried which `:path`, with its length and SHA-256. A
//! receiver that lost a push's PUSH_PROMISE (so never learnt its path) finds
//! the resource there and repairs it whole.
//!
//! The format is text, one push per line, fields separated by one space:
//!
//! ```text
//! PUSH_ID LENGTH SHA256 BODY_OFFSET PATH
//! 7 10240 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 57 /small/f007.bin
//! 9 - - - /live/feed.ts
//! ```
//!
//! `-` stands for a value not known (yet). BODY_OFFSET is where the body
//! starts in the push stream when it is one DATA frame: a receiver that lost
//! the stream's first bytes places the rest with it. The path is the
//! `:path` as pushed (percent-encoded, so without spaces).

use std::collections::BTreeMap;

/// Where the origin serves the listing.
pub const LISTING_PATH: &str = "/.well-known/h3m/pushes";

/// The most pushes a listing keeps (the oldest are forgotten first): about
/// 100 bytes each, 10 MB in all.
pub const MAX_LISTED: usize = 100_000;

/// Why a listing line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// Not five fields.
    #[error("line {0}: not `PUSH_ID LENGTH SHA256 BODY_OFFSET PATH`")]
    Fields(usize),
    /// A field is malformed.
    #[error("line {line}: bad {field}")]
    Field {
        /// The line (from 1).
        line: usize,
        /// Which field.
        field: &'static str,
    },
}

/// One listed push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its `:path`.
    pub path: String,
    /// Its body length, if known.
    pub length: Option<u64>,
    /// Its body's SHA-256, if known.
    pub sha256: Option<[u8; 32]>,
    /// Where its body starts in its push stream, if it is one DATA frame.
    pub body_offset: Option<u64>,
}

/// Push IDs to what they carried.
pub type Listing = BTreeMap<u64, Listed>;

/// Writes a listing.
pub fn format(listing: &Listing) -> String {
    let mut out = String::with_capacity(listing.len() * 100);
    for (id, l) in listing {
        let len = l.length.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let sha = l.sha256.map_or_else(|| "-".to_owned(), hex::encode);
        let off = l.body_offset.map_or_else(|| "-".to_owned(), |n| n.to_string());
        out.push_str(&std::format!("{id} {len} {sha} {off} {}\n", l.path));
    }
    out
}

/// Parses a listing (at most [`MAX_LISTED`] lines are kept).
pub fn parse(text: &str) -> Result<Listing, ListingError> {
    let mut listing = Listing::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let n = i + 1;
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, len, sha, off, path] = fields.as_slice() else { return Err(ListingError::Fields(n)) };
        let bad = |field| ListingError::Field { line: n, field };
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(id) {
            return Err(bad("push ID"));
        }
        let id: u64 = id.parse().map_err(|_| bad("push ID"))?;
        let number = |s: &str, field| match s {
            "-" => Ok(None),
            s if digits(s) => s.parse().map(Some).map_err(|_| bad(field)),
            _ => Err(bad(field)),
        };
        let length = number(len, "length")?;
        let body_offset = number(off, "body offset")?;
        let sha256 = match *sha {
            "-" => None,
            s => Some(hex::decode(s).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| bad("sha256"))?),
        };
        if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("path"));
        }
        if listing.len() < MAX_LISTED {
            listing.insert(id, Listed { path: (*path).to_owned(), length, sha256, body_offset });
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_errors() {
        let mut l = Listing::new();
        l.insert(
            7,
            Listed { path: "/a/b%20c".into(), length: Some(10), sha256: Some([0xab; 32]), body_offset: Some(57) },
        );
        l.insert(9, Listed { path: "/live".into(), length: None, sha256: None, body_offset: None });
        let text = format(&l);
        assert_eq!(text.lines().nth(1), Some("9 - - - /live"));
        assert_eq!(parse(&text), Ok(l));
        assert_eq!(parse("1 2 - -"), Err(ListingError::Fields(1)));
        assert_eq!(parse("x 2 - - /a"), Err(ListingError::Field { line: 1, field: "push ID" }));
        assert_eq!(parse("\n1 -5 - - /a"), Err(ListingError::Field { line: 2, field: "length" }));
        assert_eq!(parse("1 5 abcd - /a"), Err(ListingError::Field { line: 1, field: "sha256" }));
        assert_eq!(parse("1 5 - x /a"), Err(ListingError::Field { line: 1, field: "body offset" }));
        assert_eq!(parse("1 5 - - a"), Err(ListingError::Field { line: 1, field: "path" }));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs(s in "(?s).{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn listings_round_trip(entries in proptest::collection::btree_map(
            any::<u64>(),
            (
                "/[a-z0-9%/._-]{0,30}",
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<[u8; 32]>()),
                proptest::option::of(any::<u64>()),
            ),
            0..20,
        )) {
            let l: Listing = entries
                .into_iter()
                .map(|(id, (path, length, sha256, body_offset))| (id, Listed { path, length, sha256, body_offset }))
                .collect();
            prop_assert_eq!(parse(&format(&l)), Ok(l));
        }
    }
}
