//! Async batched UDP I/O on tokio: GSO sends and recvmmsg + GRO receives through quinn-udp.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use crate::error::{NetError, Warning};
use crate::socket::{MulticastConfig, open_receiver, open_sender};

/// Largest UDP payload over IPv4 (65 535 − 20 − 8); GSO batches must stay at or below it.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Bytes per receive slot of a [`RecvBatch`] by default: one maximal GRO super-datagram.
pub const DEFAULT_SLOT_SIZE: usize = 65_536;

/// A non-blocking multicast (or any UDP) sender socket registered with tokio, with GSO batching.
///
/// Must be created inside a tokio runtime (it registers with the reactor).
#[derive(Debug)]
pub struct SendSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    gso: AtomicBool,
    /// Most segments per GSO send the caller allows (`usize::MAX`: the kernel's limit).
    gso_limit: std::sync::atomic::AtomicUsize,
}

impl SendSocket {
    /// Wraps a socket from [`open_sender`] (or any UDP socket; it is set non-blocking).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        let gso = state.max_gso_segments() > 1;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        Ok(SendSocket { io, state, gso: AtomicBool::new(gso), gso_limit: usize::MAX.into() })
    }

    /// [`open_sender`] + [`SendSocket::from_std`].
    pub fn open(cfg: &MulticastConfig) -> Result<(Self, Vec<Warning>), NetError> {
        let (socket, warnings) = open_sender(cfg)?;
        Ok((SendSocket::from_std(socket).map_err(NetError::Runtime)?, warnings))
    }

    /// The tokio socket (for options not wrapped here).
    pub fn get_ref(&self) -> &tokio::net::UdpSocket {
        &self.io
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// How many datagrams of `size` bytes one GSO send may carry now: min(kernel segment limit,
    /// ⌊65 507 / size⌋, [`SendSocket::limit_gso_segments`]); 1 when GSO is unavailable or was
    /// disabled after a failure.
    pub fn gso_segments(&self, size: usize) -> usize {
        if !self.gso.load(Ordering::Relaxed) || size == 0 {
            return 1;
        }
        let limit = self.gso_limit.load(Ordering::Relaxed);
        self.state.max_gso_segments().min(MAX_UDP_PAYLOAD / size).min(limit).max(1)
    }

    /// Sends at most `segments` datagrams per GSO send. A GSO send crosses some links (a veth,
    /// a tunnel) as one packet, so one loss there takes all its datagrams: FEC interleaved over
    /// `depth` blocks wants at most `depth` per send.
    pub fn limit_gso_segments(&self, segments: usize) {
        self.gso_limit.store(segments.max(1), Ordering::Relaxed);
    }

    /// Turns GSO off for this socket (every datagram then costs one `sendmsg`); for comparisons and tests.
    pub fn disable_gso(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }

    /// Sends one datagram to `dest`, waiting while the socket buffer is full.
    pub async fn send_one(&self, dest: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.send_transmit(dest, datagram, None).await
    }

    async fn send_transmit(&self, dest: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> io::Result<()> {
        let transmit = Transmit { destination: dest, ecn: None, contents, segment_size, src_ip: None };
        self.io.async_io(Interest::WRITABLE, || self.state.try_send((&self.io).into(), &transmit)).await
    }

    /// Sends `contents`, the concatenation of datagrams of `segment_size` bytes (the last may be shorter),
    /// as one GSO send when possible. `contents` must hold at most [`SendSocket::gso_segments`]`(segment_size)`
    /// segments. Falls back to one send per datagram when GSO is unavailable, or fails with EIO/EINVAL (then
    /// GSO stays disabled for this socket if the single sends work; quinn-udp also lowers its own segment
    /// limit to 1 after such an error).
    pub async fn send_segments(&self, dest: SocketAddr, contents: &[u8], segment_size: usize) -> io::Result<()> {
        if segment_size == 0 || contents.len() <= segment_size {
            return self.send_one(dest, contents).await;
        }
        let n = contents.len().div_ceil(segment_size);
        if n <= self.gso_segments(segment_size) {
            match self.send_transmit(dest, contents, Some(segment_size)).await {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                    // Maybe the device cannot segment; decide below whether single sends work.
                    let mut chunks = contents.chunks(segment_size);
                    let first = chunks.next().unwrap_or_default();
                    self.send_one(dest, first).await?;
                    self.gso.store(false, Ordering::Relaxed);
                    for c in chunks {
                        self.send_one(dest, c).await?;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        for c in contents.chunks(segment_size) {
            self.send_one(dest, c).await?;
        }
        Ok(())
    }

    /// Sends every datagram to `dest` in order. Runs of equal-size datagrams (the last of a run may be
    /// shorter) go out as GSO sends of up to [`SendSocket::gso_segments`] datagrams; the rest one by one.
    /// Copies each run once into a scratch buffer; callers that can write datagrams contiguously should use
    /// [`SendSocket::send_segments`] directly.
    pub async fn send_batch<D: AsRef<[u8]>>(&self, dest: SocketAddr, datagrams: &[D]) -> io::Result<()> {
        self.send_batch_with(dest, datagrams, &mut Vec::new()).await
    }

    /// As [`SendSocket::send_batch`], laying runs out in `scratch` (a buffer the caller keeps between
    /// batches, so that its memory is allocated once).
    pub async fn send_batch_with<D: AsRef<[u8]>>(
        &self,
        dest: SocketAddr,
        datagrams: &[D],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut i = 0;
        while i < datagrams.len() {
            let size = datagrams[i].as_ref().len();
            let end = run_end(datagrams, i, self.gso_segments(size));
            if end - i == 1 {
                self.send_one(dest, datagrams[i].as_ref()).await?;
            } else {
                scratch.clear();
                for d in &datagrams[i..end] {
                    scratch.extend_from_slice(d.as_ref());
                }
                self.send_segments(dest, scratch, size).await?;
            }
            i = end;
        }
        Ok(())
    }
}

/// End (exclusive) of the GSO run starting at `start`: at most `cap` datagrams, all of the first one's
/// size except possibly a shorter, non-empty last one.
fn run_end<D: AsRef<[u8]>>(datagrams: &[D], start: usize, cap: usize) -> usize {
    let size = datagrams[start].as_ref().len();
    let mut end = start + 1;
    if size == 0 {
        return end;
    }
    while end < datagrams.len() && end - start < cap {
        let len = datagrams[end].as_ref().len();
        if len == size {
            end += 1;
        } else {
            if len > 0 && len < size {
                end += 1;
            }
            break;
        }
    }
    end
}

/// A non-blocking multicast (or any UDP) receiver socket registered with tokio, with recvmmsg + GRO.
///
/// Must be created inside a tokio runtime.
#[derive(Debug)]
pub struct RecvSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl RecvSocket {
    /// Wraps a socket from [`open_receiver`] (or any UDP socket). Enables GRO and destination-address
    /// reporting (pktinfo) when the kernel supports them.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        Ok(RecvSocket { io, state })
    }

    /// [`open_receiver`] + [`RecvSocket::from_std`], with GRO off when [`MulticastConfig::gro`] is false.
    pub fn open(cfg: &MulticastConfig) -> Result<(Self, Vec<Warning>), NetError> {
        let (socket, warnings) = open_receiver(cfg)?;
        let socket = RecvSocket::from_std(socket).map_err(NetError::Runtime)?;
        if !cfg.gro {
            use std::os::fd::AsFd;
            crate::sys::set_udp_gro(socket.io.as_fd(), false).map_err(NetError::opt("UDP_GRO"))?;
        }
        Ok((socket, warnings))
    }

    /// The tokio socket.
    pub fn get_ref(&self) -> &tokio::net::UdpSocket {
        &self.io
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// How many datagrams the kernel may coalesce into one GRO buffer (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Waits for datagrams and fills `batch` with up to [`BATCH_SIZE`] receive buffers' worth (each may
    /// hold many datagrams with GRO). Returns the number of datagrams now in `batch` (at least 1).
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let n = {
            let (bufs, metas) = batch.parts();
            let mut iovs = slots(bufs);
            self.io.async_io(Interest::READABLE, || self.state.recv((&self.io).into(), &mut iovs, metas)).await?
        };
        batch.split(n);
        Ok(batch.len())
    }

    /// Reads what is waiting now with one non-blocking `recvmmsg`, whatever tokio last learned
    /// of the socket's readiness (`WouldBlock` when nothing is): for a second socket read
    /// alongside a busy one, whose readiness events the runtime may not have processed yet.
    pub fn recv_batch_now(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let n = {
            let (bufs, metas) = batch.parts();
            let mut iovs = slots(bufs);
            self.state.recv((&self.io).into(), &mut iovs, metas)?
        };
        batch.split(n);
        Ok(batch.len())
    }

    /// Like [`RecvSocket::recv_batch`] but returns `WouldBlock` instead of waiting.
    pub fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let n = {
            let (bufs, metas) = batch.parts();
            let mut iovs = slots(bufs);
            self.io.try_io(Interest::READABLE, || self.state.recv((&self.io).into(), &mut iovs, metas))?
        };
        batch.split(n);
        Ok(batch.len())
    }
}

fn slots(buf: &mut [u8]) -> [IoSliceMut<'_>; BATCH_SIZE] {
    let slot = buf.len() / BATCH_SIZE;
    let mut chunks = buf.chunks_mut(slot).map(IoSliceMut::new);
    std::array::from_fn(|_| chunks.next().expect("RecvBatch holds BATCH_SIZE slots"))
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: usize,
    len: usize,
    source: SocketAddr,
    destination: Option<IpAddr>,
    interface_index: Option<u32>,
}

/// Reusable receive storage: [`BATCH_SIZE`] slots of `slot_size` bytes, plus the datagram list of the
/// last [`RecvSocket::recv_batch`]. Allocates only when created; iterate it to get [`RecvDatagram`]s
/// borrowing its buffer.
#[derive(Debug)]
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_size: usize,
    metas: Vec<RecvMeta>,
    entries: Vec<Entry>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// Slots of [`DEFAULT_SLOT_SIZE`] (64 KiB, 2 MiB in all): big enough for any GRO buffer.
    pub fn new() -> Self {
        RecvBatch::with_slot_size(DEFAULT_SLOT_SIZE)
    }

    /// Slots of `slot_size` bytes. With GRO on, a slot smaller than 64 KiB can truncate a coalesced buffer
    /// (the kernel drops the excess silently); only use small slots on sockets without GRO.
    pub fn with_slot_size(slot_size: usize) -> Self {
        let slot_size = slot_size.max(1);
        RecvBatch {
            buf: vec![0; slot_size * BATCH_SIZE],
            slot_size,
            metas: vec![RecvMeta::default(); BATCH_SIZE],
            entries: Vec::with_capacity(BATCH_SIZE * 64),
        }
    }

    /// Number of datagrams from the last receive.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the last receive produced no datagram.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the datagrams (keeps the storage).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> Option<RecvDatagram<'_>> {
        self.entries.get(i).map(|e| self.datagram(e))
    }

    /// The datagrams of the last receive, in arrival order per source.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecvDatagram<'_>> + '_ {
        self.entries.iter().map(|e| self.datagram(e))
    }

    fn datagram(&self, e: &Entry) -> RecvDatagram<'_> {
        RecvDatagram {
            payload: &self.buf[e.offset..e.offset + e.len],
            source: e.source,
            destination: e.destination,
            interface_index: e.interface_index,
        }
    }

    fn parts(&mut self) -> (&mut [u8], &mut [RecvMeta]) {
        (&mut self.buf, &mut self.metas)
    }

    /// Splits the first `n` filled slots into datagrams by their GRO stride.
    fn split(&mut self, n: usize) {
        for (i, meta) in self.metas[..n].iter().enumerate() {
            let base = i * self.slot_size;
            let len = meta.len.min(self.slot_size);
            let stride = if meta.stride == 0 { len.max(1) } else { meta.stride };
            let mut off = 0;
            loop {
                let l = stride.min(len - off);
                self.entries.push(Entry {
                    offset: base + off,
                    len: l,
                    source: meta.addr,
                    destination: meta.dst_ip,
                    interface_index: meta.interface_index,
                });
                off += l;
                if off >= len {
                    break;
                }
            }
        }
    }
}

/// One received datagram, borrowing its [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvDatagram<'a> {
    /// The UDP payload.
    pub payload: &'a [u8],
    /// The sender's address and port.
    pub source: SocketAddr,
    /// The destination (group) address from pktinfo, when the kernel reported it.
    pub destination: Option<IpAddr>,
    /// The index of the interface it arrived on, when reported.
    pub interface_index: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(v: &[usize]) -> Vec<Vec<u8>> {
        v.iter().map(|&n| vec![0u8; n]).collect()
    }

    #[test]
    fn runs() {
        let d = lens(&[1200, 1200, 1200, 800, 1200, 1200, 0, 5, 5]);
        assert_eq!(run_end(&d, 0, 64), 4); // three full + a shorter tail
        assert_eq!(run_end(&d, 4, 64), 6); // stops before the empty datagram
        assert_eq!(run_end(&d, 6, 64), 7); // empty alone
        assert_eq!(run_end(&d, 7, 64), 9);
        assert_eq!(run_end(&d, 0, 2), 2); // capped
        assert_eq!(run_end(&d, 0, 1), 1);
        let d = lens(&[100, 200, 200]);
        assert_eq!(run_end(&d, 0, 64), 1); // a longer datagram cannot join a run
        let d = lens(&[100, 50, 50]);
        assert_eq!(run_end(&d, 0, 64), 2); // only one short tail
    }

    #[test]
    fn split_by_stride() {
        let mut b = RecvBatch::with_slot_size(10_000);
        let src: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (i, b) in b.buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let mut m = RecvMeta::default();
        m.addr = src;
        m.len = 2500;
        m.stride = 1000;
        b.metas[0] = m;
        m.len = 7;
        m.stride = 7;
        b.metas[1] = m;
        b.split(2);
        let got: Vec<_> = b.iter().map(|d| (d.payload.len(), d.payload[0])).collect();
        assert_eq!(
            got,
            vec![(1000, 0), (1000, (1000 % 251) as u8), (500, (2000 % 251) as u8), (7, (10_000 % 251) as u8)]
        );
        assert_eq!(b.len(), 4);
        b.clear();
        assert!(b.is_empty());
    }
}
