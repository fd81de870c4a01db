//! A small pcapng writer for tests (shared by the capture unit tests and
//! `tests/capture_pcapng.rs`): sections in either byte order, interfaces with
//! a link type, snap length, `if_tsresol` and `if_tsoffset`, Enhanced and
//! Simple Packet Blocks, any other block, and the conversion of a classic
//! pcap file.

#![allow(dead_code)]

/// Appends pcapng blocks to a buffer.
pub struct PcapNgWriter {
    big: bool,
    out: Vec<u8>,
}

impl PcapNgWriter {
    /// A file starting with a section in big-endian (`big`) or little-endian
    /// byte order.
    pub fn new(big: bool) -> Self {
        let mut w = PcapNgWriter { big, out: Vec::new() };
        w.section(big);
        w
    }

    fn u16s(&self, v: u16) -> [u8; 2] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    fn u32s(&self, v: u32) -> [u8; 4] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    /// Appends a block of `block_type` with `body` (padded to 32 bits).
    pub fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let (t, l) = (self.u32s(block_type), self.u32s(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend_from_slice(&l);
        self
    }

    /// Starts a new section (version 1.0, unknown length).
    pub fn section(&mut self, big: bool) -> &mut Self {
        self.big = big;
        let mut body = self.u32s(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16s(1));
        body.extend_from_slice(&self.u16s(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }

    fn option(&self, body: &mut Vec<u8>, code: u16, value: &[u8]) {
        body.extend_from_slice(&self.u16s(code));
        body.extend_from_slice(&self.u16s(value.len() as u16));
        body.extend_from_slice(value);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }

    /// An interface description: link type, snap length (0: none), and the
    /// `if_tsresol` / `if_tsoffset` options when given.
    pub fn interface(&mut self, link_type: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) -> &mut Self {
        let mut body = self.u16s(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32s(snaplen));
        self.option(&mut body, 2, b"h3m0");
        if let Some(r) = tsresol {
            self.option(&mut body, 9, &[r]);
        }
        if let Some(o) = tsoffset {
            let b = if self.big { o.to_be_bytes() } else { o.to_le_bytes() };
            self.option(&mut body, 14, &b);
        }
        if tsresol.is_some() || tsoffset.is_some() {
            self.option(&mut body, 0, &[]);
        }
        self.block(1, &body)
    }

    /// An Enhanced Packet Block of `interface` at `timestamp` (in the
    /// interface's units), capturing `data` of a packet `origlen` long.
    pub fn epb(&mut self, interface: u32, timestamp: u64, data: &[u8], origlen: u32) -> &mut Self {
        let mut body = self.u32s(interface).to_vec();
        body.extend_from_slice(&self.u32s((timestamp >> 32) as u32));
        body.extend_from_slice(&self.u32s(timestamp as u32));
        body.extend_from_slice(&self.u32s(data.len() as u32));
        body.extend_from_slice(&self.u32s(origlen));
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        self.block(6, &body)
    }

    /// A Simple Packet Block (first interface, no timestamp).
    pub fn spb(&mut self, data: &[u8], origlen: u32) -> &mut Self {
        let mut body = self.u32s(origlen).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    /// The file so far.
    pub fn finish(&self) -> Vec<u8> {
        self.out.clone()
    }
}

/// How [`from_pcap`] writes a classic pcap file as pcapng.
#[derive(Debug, Clone, Copy)]
pub struct Conversion {
    /// Big-endian section.
    pub big: bool,
    /// The interface's `if_tsresol` (decimal exponents of at least the
    /// pcap's, so that timestamps stay exact); `None`: the default, 6.
    pub tsresol: Option<u8>,
    /// The interface's `if_tsoffset` in seconds, taken off every timestamp.
    pub tsoffset: i64,
    /// An interface of another link type first (the packets use the second),
    /// with a packet of its own and a statistics block in between.
    pub decoy: bool,
}

/// A classic pcap file (either byte order, micro- or nanosecond timestamps)
/// written as pcapng, record by record.
pub fn from_pcap(pcap: &[u8], how: Conversion) -> Vec<u8> {
    let magic = u32::from_le_bytes(pcap[..4].try_into().unwrap());
    let (big, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        other => panic!("not a pcap: {other:#x}"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = pcap[at..at + 4].try_into().unwrap();
        if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    };
    let link_type = (u32_at(20) & 0xffff) as u16;
    let mut w = PcapNgWriter::new(how.big);
    let mut interface = 0;
    if how.decoy {
        w.interface(147, 0, Some(3), None);
        w.epb(0, 1_000, b"not a packet of ours", 20);
        interface = 1;
    }
    w.interface(link_type, 0, how.tsresol, (how.tsoffset != 0).then_some(how.tsoffset));
    let resolution = u32::from(how.tsresol.unwrap_or(6));
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let (sec, frac, caplen, origlen) = (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12));
        let data = &pcap[at + 16..at + 16 + caplen as usize];
        let nanos = (i128::from(sec) - i128::from(how.tsoffset)) * 1_000_000_000
            + i128::from(frac) * if nanos { 1 } else { 1_000 };
        let units = nanos * 10i128.pow(resolution) / 1_000_000_000;
        w.epb(interface, u64::try_from(units).unwrap(), data, origlen);
        if how.decoy && at == 24 {
            w.block(5, &[0; 12]);
        }
        at += 16 + caplen as usize;
    }
    w.finish()
}
