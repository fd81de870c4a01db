//! An `application/ambi` body, read as it comes: back-to-back manifests in
//! chunks cut anywhere (the HTTPS manifest channel).

use super::{Manifest, ManifestError};

/// Reassembles manifests from the chunks of an `application/ambi` body.
///
/// It holds at most one manifest's bytes beyond what was read (the format
/// bounds a manifest: 16 bytes, 65 535 of TLVs and 32 767 digests), so a
/// channel that sends junk costs a bounded buffer and then an error.
#[derive(Debug)]
pub struct ManifestStream {
    buf: Vec<u8>,
    start: usize,
    digest_len: usize,
}

impl ManifestStream {
    /// A reader of manifests whose digests are `digest_len` bytes (the
    /// digest profile's).
    pub fn new(digest_len: usize) -> Self {
        ManifestStream { buf: Vec::new(), start: 0, digest_len }
    }

    /// Adds the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole manifest, `None` until one is whole; an error means
    /// the channel sends what is not a manifest (disconnect it).
    pub fn next_manifest(&mut self) -> Result<Option<Manifest>, ManifestError> {
        match Manifest::parse_prefix(&self.buf[self.start..], self.digest_len)? {
            Some((m, used)) => {
                self.start += used;
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    /// Bytes held that are not a whole manifest yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tlv;
    use super::*;
    use proptest::prelude::*;

    fn manifest(seq: u32, count: usize, tlv: bool) -> Manifest {
        Manifest {
            stream_id: 7,
            sequence: seq,
            first_packet: seq * 100,
            tlvs: if tlv { vec![Tlv::refresh_deadline(30)] } else { Vec::new() },
            digests: (0..count * 16).map(|i| (i as u32 ^ seq) as u8).collect(),
            digest_len: 16,
        }
    }

    proptest! {
        /// However the body is cut, the same manifests come out, in order,
        /// and nothing is left over.
        #[test]
        fn any_cut_gives_the_same_manifests(
            shapes in proptest::collection::vec((0usize..80, any::<bool>()), 1..12),
            cuts in proptest::collection::vec(1usize..300, 1..40),
        ) {
            let sent: Vec<Manifest> =
                shapes.iter().enumerate().map(|(i, (n, t))| manifest(i as u32, *n, *t)).collect();
            let mut body = Vec::new();
            for m in &sent {
                m.write(&mut body).unwrap();
            }
            let mut reader = ManifestStream::new(16);
            let mut got = Vec::new();
            let (mut at, mut k) = (0, 0);
            while at < body.len() {
                let n = cuts[k % cuts.len()].min(body.len() - at);
                reader.push(&body[at..at + n]);
                at += n;
                k += 1;
                while let Some(m) = reader.next_manifest().unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got, sent);
            prop_assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn junk_is_an_error_not_a_growing_buffer() {
        let mut reader = ManifestStream::new(16);
        // A count of 3 digests but TLV space running past nothing: parses as
        // incomplete until the bytes come, then fails on the TLVs.
        let mut junk = vec![0u8; 12];
        junk.extend_from_slice(&[0x80, 0x03, 0x00, 0x04, 0x80, 0x09, 0, 0]);
        junk.extend_from_slice(&[0u8; 48]);
        reader.push(&junk);
        assert_eq!(reader.next_manifest(), Err(ManifestError::TlvOverrun));
    }
}
