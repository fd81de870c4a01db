//! A stretch of a capture file held in memory, so that the format readers work
//! the same on a whole file and on a file read a piece at a time.

/// The bytes of a capture file from offset `base` on, and whether the file
/// ends after them. Positions given to its methods are file offsets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window<'a> {
    bytes: &'a [u8],
    base: usize,
    eof: bool,
}

/// What a [`Window`] holds of a requested stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span<'a> {
    /// All of it.
    Bytes(&'a [u8]),
    /// Not all of it yet: the file goes on past the window.
    More,
    /// Not all of it, ever: the file ends first.
    Cut,
}

impl<'a> Window<'a> {
    /// A whole file in memory.
    pub(super) fn whole(bytes: &'a [u8]) -> Self {
        Window { bytes, base: 0, eof: true }
    }

    /// `bytes` are the file's bytes from offset `base`; `eof`: nothing follows them.
    pub(super) fn part(bytes: &'a [u8], base: usize, eof: bool) -> Self {
        Window { bytes, base, eof }
    }

    /// The file offset just past the bytes held.
    pub(super) fn end(&self) -> usize {
        self.base.saturating_add(self.bytes.len())
    }

    /// Whether `at` is the end of the file: `Some(true)` if it is, `Some(false)`
    /// if bytes follow it in the window, `None` if that is not known yet.
    pub(super) fn is_end(&self, at: usize) -> Option<bool> {
        if at < self.end() {
            Some(false)
        } else if self.eof {
            Some(true)
        } else {
            None
        }
    }

    /// The `len` bytes at file offset `at`.
    pub(super) fn span(&self, at: usize, len: usize) -> Span<'a> {
        let Some(start) = at.checked_sub(self.base) else {
            // Before the window: the readers never look back.
            return Span::Cut;
        };
        match start.checked_add(len).and_then(|end| self.bytes.get(start..end)) {
            Some(bytes) => Span::Bytes(bytes),
            None if self.eof || start.checked_add(len).is_none() => Span::Cut,
            None => Span::More,
        }
    }

    /// The `N` bytes at file offset `at`, as an array.
    pub(super) fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], Span<'a>> {
        match self.span(at, N) {
            Span::Bytes(bytes) => bytes.try_into().map_err(|_| Span::Cut),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_is_never_more() {
        let w = Window::whole(b"abcdef");
        assert_eq!(w.span(2, 3), Span::Bytes(b"cde"));
        assert_eq!(w.span(4, 3), Span::Cut);
        assert_eq!(w.span(usize::MAX, 2), Span::Cut);
        assert_eq!(w.is_end(5), Some(false));
        assert_eq!(w.is_end(6), Some(true));
        assert_eq!(w.array::<2>(0), Ok(*b"ab"));
    }

    #[test]
    fn a_part_asks_for_more_until_the_end_of_the_file() {
        let w = Window::part(b"cdef", 2, false);
        assert_eq!(w.span(3, 2), Span::Bytes(b"de"));
        assert_eq!(w.span(5, 2), Span::More);
        assert_eq!(w.span(0, 1), Span::Cut);
        assert_eq!(w.is_end(6), None);
        let last = Window::part(b"cdef", 2, true);
        assert_eq!(last.span(5, 2), Span::Cut);
        assert_eq!(last.is_end(6), Some(true));
        assert_eq!(last.end(), 6);
    }
}
