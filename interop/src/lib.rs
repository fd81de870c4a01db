//! Interop tests live in `tests/`; the captures in `vectors/`.
