//! Reading a capture a piece at a time: [`CaptureReader`].

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

use super::window::Window;
use super::{CaptureError, CaptureStats, Datagram, Format, Parser, ReadOptions, ReassemblyLimits, Step};

/// How many bytes are read from the file at a time.
pub const DEFAULT_CHUNK_LEN: usize = 256 * 1024;

/// An iterator over the UDP datagrams of a capture (pcap, pcapng or
/// `.datagrams`, detected by content) read from a file or any [`Read`] a
/// piece at a time.
///
/// It holds one chunk of the file and the record being read (at most
/// [`DEFAULT_CHUNK_LEN`] plus the longest record), never the whole file:
/// a capture of any length is read in bounded memory, and the datagrams are
/// the same, in the same order, with the same [`CaptureStats`] and errors
/// (offsets are file offsets), as [`read_capture`](super::read_capture) gives
/// for the file's bytes. After an error (of the file's content, or
/// [`CaptureError::Io`] naming the file) it yields nothing more.
///
/// ```no_run
/// use h3m_receiver::capture::{CaptureReader, ReadOptions};
///
/// let mut reader = CaptureReader::open("session.pcap".as_ref(), &ReadOptions::default())?;
/// for datagram in reader.by_ref() {
///     let datagram = datagram?;
///     println!("{} bytes", datagram.payload.len());
/// }
/// println!("{:?}", reader.stats());
/// # Ok::<(), h3m_receiver::capture::CaptureError>(())
/// ```
#[derive(Debug)]
pub struct CaptureReader<R> {
    input: R,
    path: PathBuf,
    chunk_len: usize,
    /// The file's bytes from offset `base` on.
    buf: Vec<u8>,
    base: usize,
    eof: bool,
    parser: Parser,
}

impl CaptureReader<File> {
    /// Opens the capture file at `path` and detects its format.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Io { path: path.to_path_buf(), source })?;
        CaptureReader::new(file, path, opts)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads a capture from `input`; `path` names it in [`CaptureError::Io`].
    pub fn new(input: R, path: &Path, opts: &ReadOptions) -> Result<Self, CaptureError> {
        Self::with_limits(input, path, opts, ReassemblyLimits::default(), DEFAULT_CHUNK_LEN)
    }

    /// Like [`new`](Self::new), with explicit reassembly bounds and the
    /// number of bytes read at a time (at least 1).
    pub fn with_limits(
        mut input: R,
        path: &Path,
        opts: &ReadOptions,
        limits: ReassemblyLimits,
        chunk_len: usize,
    ) -> Result<Self, CaptureError> {
        let chunk_len = chunk_len.max(1);
        let mut buf = Vec::new();
        let mut eof = false;
        loop {
            if let Some(parser) = Parser::detect(Window::part(&buf, 0, eof), opts, limits)? {
                let path = path.to_path_buf();
                return Ok(CaptureReader { input, path, chunk_len, buf, base: 0, eof, parser });
            }
            eof = read_chunk(&mut input, &mut buf, chunk_len).map_err(|source| io_error(path, source))?;
        }
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.parser.format
    }

    /// The counters so far (final once the iterator has returned `None`).
    pub fn stats(&self) -> &CaptureStats {
        &self.parser.stats
    }

    /// The counters, consuming the reader.
    pub fn into_stats(self) -> CaptureStats {
        self.parser.stats
    }

    /// How many bytes of the file it holds now (its buffer's capacity).
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Forgets the bytes before the next record and reads another chunk.
    fn refill(&mut self) -> Result<(), CaptureError> {
        let done = self.parser.source.pos().saturating_sub(self.base).min(self.buf.len());
        self.buf.drain(..done);
        self.base += done;
        self.eof = read_chunk(&mut self.input, &mut self.buf, self.chunk_len).map_err(|e| io_error(&self.path, e))?;
        Ok(())
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Datagram, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.parser.step(Window::part(&self.buf, self.base, self.eof)) {
                Step::Item(item) => return Some(item),
                Step::Done => return None,
                // At the end of the file the window never asks for more.
                Step::More if self.eof => return None,
                Step::More => {
                    if let Err(e) = self.refill() {
                        self.parser.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

impl<R: Read> FusedIterator for CaptureReader<R> {}

fn io_error(path: &Path, source: std::io::Error) -> CaptureError {
    CaptureError::Io { path: path.to_path_buf(), source }
}

/// Appends what one read of `input` gives (at most `len` bytes) to `buf`;
/// `true` at the end of the input.
fn read_chunk(input: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> std::io::Result<bool> {
    let start = buf.len();
    buf.resize(start + len, 0);
    let result = loop {
        match input.read(&mut buf[start..]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    let n = *result.as_ref().unwrap_or(&0);
    buf.truncate(start + n);
    result.map(|n| n == 0)
}
