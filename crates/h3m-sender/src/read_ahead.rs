//! Reading a file ahead of the sender on a second thread, hashing it on the way.
//!
//! SHA-256 is the largest cost of sending a big file (about 0.06 s per 100 MiB
//! with the CPU's SHA extensions, as much as building and sending its
//! datagrams), and reading the file is the next. [`ReadAhead`] does both on a
//! thread of its own: the sender's loop only packetizes and sends the chunks it
//! is handed, and learns the digest after the last one (for trailers). At most
//! [`DEPTH`] chunks are in flight; the sender hands their buffers back to be
//! filled again ([`ReadAhead::recycle`]), so memory stays at `DEPTH + 1` chunks.

use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

/// Bytes per chunk read.
pub const CHUNK: usize = 256 * 1024;

/// Chunks read ahead of the sender at most.
pub const DEPTH: usize = 4;

/// What the reading thread hands over.
#[derive(Debug)]
pub enum Piece {
    /// The next bytes of the file.
    Data(Vec<u8>),
    /// All `len` bytes were read; their SHA-256.
    End {
        /// The SHA-256 of the bytes handed over.
        sha256: [u8; 32],
    },
}

/// Why reading ahead stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadAheadError {
    /// A read failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file ended before the length it had when reading began.
    #[error("file shrank while being sent ({read} of {len} bytes)")]
    Shrank {
        /// Bytes read.
        read: u64,
        /// Bytes expected.
        len: u64,
    },
}

/// A file being read and hashed on a second thread (see the [module docs](self)).
#[derive(Debug)]
pub struct ReadAhead {
    pieces: Receiver<Result<Piece, ReadAheadError>>,
    recycle: SyncSender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading the first `len` bytes of `file` from its current position.
    pub fn spawn(file: File, len: u64) -> io::Result<Self> {
        let (piece_tx, pieces) = sync_channel(DEPTH);
        let (recycle, recycled) = sync_channel(DEPTH + 1);
        let thread = std::thread::Builder::new()
            .name("h3m-read-ahead".into())
            .spawn(move || read_loop(file, len, &piece_tx, &recycled))?;
        Ok(ReadAhead { pieces, recycle, thread: Some(thread) })
    }

    /// The next piece, waiting for it; `None` after an error or [`Piece::End`].
    pub fn next_piece(&mut self) -> Option<Result<Piece, ReadAheadError>> {
        self.pieces.recv().ok()
    }

    /// Hands a [`Piece::Data`] buffer back to be filled again.
    pub fn recycle(&self, buf: Vec<u8>) {
        let _ = self.recycle.try_send(buf);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Dropping the receiving end fails the reader's next (or waiting)
        // hand-over, which ends it; then wait for it.
        let (_, closed) = sync_channel(0);
        self.pieces = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(
    mut file: File,
    len: u64,
    pieces: &SyncSender<Result<Piece, ReadAheadError>>,
    recycled: &Receiver<Vec<u8>>,
) {
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut read = 0u64;
    while read < len {
        let mut buf = match recycled.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        };
        let want = CHUNK.min(usize::try_from(len - read).unwrap_or(CHUNK));
        buf.resize(want, 0);
        let n = match file.read(&mut buf) {
            Ok(0) => {
                let _ = pieces.send(Err(ReadAheadError::Shrank { read, len }));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = pieces.send(Err(e.into()));
                return;
            }
        };
        buf.truncate(n);
        hasher.update(&buf);
        read += n as u64;
        if pieces.send(Ok(Piece::Data(buf))).is_err() {
            return;
        }
    }
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(hasher.finish().as_ref());
    let _ = pieces.send(Ok(Piece::End { sha256 }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(file: File, len: u64) -> (Vec<u8>, Result<[u8; 32], String>) {
        let mut ahead = ReadAhead::spawn(file, len).unwrap();
        let mut out = Vec::new();
        while let Some(piece) = ahead.next_piece() {
            match piece {
                Ok(Piece::Data(buf)) => {
                    out.extend_from_slice(&buf);
                    ahead.recycle(buf);
                }
                Ok(Piece::End { sha256 }) => return (out, Ok(sha256)),
                Err(e) => return (out, Err(e.to_string())),
            }
        }
        (out, Err("ended without End".into()))
    }

    #[test]
    fn hands_over_every_byte_and_their_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body: Vec<u8> = (0..(3 * CHUNK + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let (got, sha) = read_all(File::open(&path).unwrap(), body.len() as u64);
        assert_eq!(got, body);
        assert_eq!(sha.unwrap(), h3m_proto::http::digest::sha256(&body));
        // Only the first `len` bytes.
        let (got, sha) = read_all(File::open(&path).unwrap(), 1000);
        assert_eq!(got, &body[..1000]);
        assert_eq!(sha.unwrap(), h3m_proto::http::digest::sha256(&body[..1000]));
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; CHUNK + 10]).unwrap();
        let (got, sha) = read_all(File::open(&path).unwrap(), 2 * CHUNK as u64);
        assert_eq!(got.len(), CHUNK + 10);
        assert_eq!(sha.unwrap_err(), format!("file shrank while being sent ({} of {} bytes)", CHUNK + 10, 2 * CHUNK));
    }

    #[test]
    fn dropping_it_early_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 20 * CHUNK]).unwrap();
        let mut ahead = ReadAhead::spawn(File::open(&path).unwrap(), 20 * CHUNK as u64).unwrap();
        assert!(matches!(ahead.next_piece(), Some(Ok(Piece::Data(_)))));
        drop(ahead); // joins the thread: the test would hang if it did not end
    }
}
