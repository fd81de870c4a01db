//! Writes `.datagrams` captures: each record a 4-byte big-endian length and
//! the UDP payload.

use std::io::Write;
use std::path::Path;

/// Writes `datagrams` to `path` as a `.datagrams` file.
pub fn write(path: &Path, datagrams: &[impl AsRef<[u8]>]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create the capture"));
    for d in datagrams {
        let d = d.as_ref();
        f.write_all(&(d.len() as u32).to_be_bytes()).expect("write the capture");
        f.write_all(d).expect("write the capture");
    }
    f.flush().expect("write the capture");
}
