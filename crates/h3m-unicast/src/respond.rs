//! One request to one answer, whatever the transport (HTTP/3 or HTTP/1.1):
//! the status, the headers and the bytes to send, read in chunks from the
//! [`Catalog`].

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use std::sync::Arc;

use crate::catalog::{Catalog, Entry, EntryReader, ReadError, Source};
use crate::listing::{self, LISTING_PATH, Listing};
use crate::range::{ByteRange, ContentRange};

/// Body bytes are read and sent this many at a time.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What to answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The body to send (none for HEAD and errors).
    pub(crate) body: Option<BodyPlan>,
    /// It answers for the [listing](crate::listing), not a resource.
    pub(crate) listing: bool,
}

impl Answer {
    fn bare(status: StatusCode) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Answer { status, headers, body: None, listing: false }
    }

    /// `503` with `Retry-After` (the origin is at its request limit).
    pub(crate) fn busy(retry_after_secs: u64) -> Answer {
        let mut a = Answer::bare(StatusCode::SERVICE_UNAVAILABLE);
        a.headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        a
    }
}

/// The bytes of an answer still to send.
#[derive(Debug)]
pub(crate) struct BodyPlan {
    reader: EntryReader,
    range: Range<u64>,
}

impl BodyPlan {
    /// The next chunk, `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.range.is_empty() {
            return Ok(None);
        }
        let want = CHUNK.min((self.range.end - self.range.start) as usize);
        let chunk = self.reader.read_at(self.range.start, want)?;
        if chunk.is_empty() {
            return Err(ReadError::Changed);
        }
        self.range.start += chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Bytes left to send.
    pub(crate) fn remaining(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// The answer to `method path` with an optional `Range` field.
pub(crate) fn answer(catalog: &Catalog, method: &Method, path: &str, range: Option<&HeaderValue>) -> Answer {
    if method != Method::GET && method != Method::HEAD {
        let mut a = Answer::bare(StatusCode::METHOD_NOT_ALLOWED);
        a.headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return a;
    }
    let listing_of = |l: Listing| {
        let text = listing::format(&l);
        Arc::new(Entry { source: Source::Memory(text.into()), content_type: Some("text/plain".into()), sha256: None })
    };
    let one = path.strip_prefix(LISTING_PATH).and_then(|rest| rest.strip_prefix('/'));
    let entry = if path == LISTING_PATH {
        listing_of(catalog.listing())
    } else if let Some(id) = one {
        match id.parse::<u64>().ok().and_then(|id| Some((id, catalog.listed(id)?))) {
            Some((id, l)) => listing_of(Listing::from([(id, l)])),
            None => return Answer::bare(StatusCode::NOT_FOUND),
        }
    } else {
        match catalog.get(path) {
            Some(e) => e,
            None => return Answer::bare(StatusCode::NOT_FOUND),
        }
    };
    let reader = match entry.reader() {
        Ok(r) => r,
        Err(ReadError::Changed) => return Answer::bare(StatusCode::GONE),
        Err(ReadError::Io(_)) => return Answer::bare(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(ct) = entry.content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(d) = entry.sha256 {
        if let Ok(v) = HeaderValue::from_str(&crate::repr_digest::format(&d)) {
            headers.insert("repr-digest", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hex::encode(d))) {
            headers.insert(header::ETAG, v);
        }
    }
    let available = entry.available();
    let (status, span) = match range.map(|v| v.to_str().map(ByteRange::parse)) {
        None => (StatusCode::OK, 0..available),
        Some(Ok(Ok(r))) => match r.resolve(available) {
            Some(span) => {
                let cr = ContentRange::header_value(&span, entry.len());
                headers
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap_or(HeaderValue::from_static("")));
                (StatusCode::PARTIAL_CONTENT, span)
            }
            None => {
                let mut a = Answer::bare(StatusCode::RANGE_NOT_SATISFIABLE);
                let total = entry.len().map_or_else(|| "*".to_owned(), |l| l.to_string());
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    a.headers.insert(header::CONTENT_RANGE, v);
                }
                return a;
            }
        },
        Some(_) => return Answer::bare(StatusCode::BAD_REQUEST),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    let body = (method == Method::GET).then_some(BodyPlan { reader, range: span });
    Answer { status, headers, body, listing: path == LISTING_PATH || one.is_some() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Entry, Source};

    fn catalog() -> Catalog {
        let c = Catalog::new();
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        c.insert(
            "/a/b.bin",
            Entry {
                source: Source::Memory(body.into()),
                content_type: Some("video/mp4".into()),
                sha256: Some([1; 32]),
            },
        );
        c
    }

    fn collect(a: &mut Answer) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(b) = a.body.as_mut() {
            while let Some(c) = b.next_chunk().unwrap() {
                assert!(c.len() <= CHUNK);
                out.extend_from_slice(&c);
            }
        }
        out
    }

    #[test]
    fn statuses_and_headers() {
        let c = catalog();
        let mut a = answer(&c, &Method::GET, "/a/b.bin", Some(&HeaderValue::from_static("bytes=1000-70999")));
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(a.headers[header::CONTENT_RANGE], "bytes 1000-70999/200000");
        assert_eq!(a.headers[header::CONTENT_LENGTH], "70000");
        assert_eq!(a.headers[header::CONTENT_TYPE], "video/mp4");
        let body = collect(&mut a);
        assert_eq!(body.len(), 70_000);
        assert!(body.iter().enumerate().all(|(i, b)| *b == (1000 + i as u32) as u8));
        let mut whole = answer(&c, &Method::GET, "/a/b.bin", None);
        assert_eq!((whole.status, collect(&mut whole).len()), (StatusCode::OK, 200_000));
        let head = answer(&c, &Method::HEAD, "/a/b.bin", Some(&HeaderValue::from_static("bytes=-10")));
        assert_eq!((head.status, head.body.is_none()), (StatusCode::PARTIAL_CONTENT, true));
        assert_eq!(head.headers[header::CONTENT_LENGTH], "10");
        let past = answer(&c, &Method::GET, "/a/b.bin", Some(&HeaderValue::from_static("bytes=200000-")));
        assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(past.headers[header::CONTENT_RANGE], "bytes */200000");
        let bad = answer(&c, &Method::GET, "/a/b.bin", Some(&HeaderValue::from_static("bytes=1-2,4-5")));
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer(&c, &Method::GET, "/nope", None).status, StatusCode::NOT_FOUND);
        assert_eq!(answer(&c, &Method::POST, "/a/b.bin", None).status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(Answer::busy(2).headers[header::RETRY_AFTER], "2");
    }
}
