//! Link-layer capture of an interface's multicast UDP (`AF_PACKET`), with the kernel's offload metadata.
//!
//! A [`PacketCapture`] is an `AF_PACKET`/`SOCK_RAW` socket bound to one interface and one EtherType
//! (IPv4 or IPv6) with:
//!
//! - `PACKET_VNET_HDR`: every frame comes after a 10-octet `struct virtio_net_hdr` ([`VIRTIO_NET_HDR_LEN`])
//!   describing the offloads still pending on it. Virtual links (veth, loopback) hand a UDP GSO
//!   (`UDP_SEGMENT`) send to the peer as one unsegmented "super-packet" whose UDP payload is many datagrams
//!   back to back; the header is the only place that says so (`gso_type` UDP_L4) and gives the segment size
//!   (`gso_size`). It also flags a checksum left for the NIC (`NEEDS_CSUM`, `csum_start`/`csum_offset`).
//!   Decoding the header is the caller's business.
//! - `PACKET_AUXDATA`: the offset of the network header in the frame, whatever the link type.
//! - `PACKET_IGNORE_OUTGOING` (Linux 4.20; outgoing frames are also skipped here): only what arrives.
//! - A classic BPF filter keeping only what can be multicast UDP (IPv4: protocol 17 to 224.0.0.0/4; IPv6:
//!   to ff00::/8 with UDP or an extension header next), so the rest of the interface's traffic never
//!   reaches user space.
//!
//! The socket is created with protocol 0 (it receives nothing) and bound to its EtherType and interface
//! only once the filter and options are in place. It needs `CAP_NET_RAW`.

use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll};

use socket2::{Domain, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::sys;

/// Octets of the `struct virtio_net_hdr` in front of every frame a [`PacketCapture`] reads.
pub const VIRTIO_NET_HDR_LEN: usize = 10;

/// Which IP version a [`PacketCapture`] captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureFamily {
    /// IPv4 (EtherType 0x0800).
    V4,
    /// IPv6 (EtherType 0x86DD).
    V6,
}

/// Where one [`PacketCapture::try_recv`] put a frame in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Octets written: the [`VIRTIO_NET_HDR_LEN`]-octet header, then the frame.
    pub len: usize,
    /// Where the network (IP) header starts, counted from the start of the frame (after the header).
    pub network_offset: usize,
    /// The frame did not fit the buffer: `len` octets were kept, the rest is lost.
    pub truncated: bool,
}

/// A non-blocking `AF_PACKET` capture socket registered with tokio (see the module documentation).
#[derive(Debug)]
pub struct PacketCapture {
    io: AsyncFd<Socket>,
    family: CaptureFamily,
}

const fn stmt(code: u32, k: u32) -> SockFilter {
    SockFilter::new(code as u16, 0, 0, k)
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter::new(code as u16, jt, jf, k)
}

/// `ld b [net + offset]`: one octet of the network header.
const fn load_net_octet(offset: i32) -> SockFilter {
    stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, (libc::SKF_NET_OFF + offset) as u32)
}

const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const ACCEPT: SockFilter = stmt(libc::BPF_RET | libc::BPF_K, u32::MAX);
const REJECT: SockFilter = stmt(libc::BPF_RET | libc::BPF_K, 0);

/// IPv4: protocol UDP and a destination in 224.0.0.0/4.
const FILTER_V4: [SockFilter; 7] = [
    load_net_octet(9),
    jump(JEQ, 17, 0, 4),
    load_net_octet(16),
    stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0xf0),
    jump(JEQ, 0xe0, 0, 1),
    ACCEPT,
    REJECT,
];

/// IPv6: a destination in ff00::/8 and next header UDP, Hop-by-Hop, Routing or Destination Options (the
/// extension headers are walked in user space).
const FILTER_V6: [SockFilter; 9] = [
    load_net_octet(24),
    jump(JEQ, 0xff, 0, 6),
    load_net_octet(6),
    jump(JEQ, 17, 3, 0),
    jump(JEQ, 0, 2, 0),
    jump(JEQ, 43, 1, 0),
    jump(JEQ, 60, 0, 1),
    ACCEPT,
    REJECT,
];

impl PacketCapture {
    /// Opens the capture of `family` packets arriving on interface `ifindex` (of the calling thread's network
    /// namespace), asking for a `recv_buffer`-octet receive buffer (forced beyond `net.core.rmem_max` when
    /// permitted, else capped by it). Must be called inside a tokio runtime.
    pub fn open(ifindex: u32, family: CaptureFamily, recv_buffer: usize) -> io::Result<PacketCapture> {
        // Protocol 0: nothing is queued before the bind below.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        let (ethertype, filter): (u16, &[SockFilter]) = match family {
            CaptureFamily::V4 => (libc::ETH_P_IP as u16, &FILTER_V4),
            CaptureFamily::V6 => (libc::ETH_P_IPV6 as u16, &FILTER_V6),
        };
        socket.attach_filter(filter)?;
        sys::set_packet_option(socket.as_fd(), libc::PACKET_VNET_HDR, 1)?;
        sys::set_packet_option(socket.as_fd(), libc::PACKET_AUXDATA, 1)?;
        // Best effort (Linux 4.20): try_recv skips outgoing frames anyway.
        let _ = sys::set_packet_option(socket.as_fd(), libc::PACKET_IGNORE_OUTGOING, 1);
        let bytes = recv_buffer.min(i32::MAX as usize);
        if sys::force_buffer_size(socket.as_fd(), true, bytes).is_err() {
            // Best effort: a smaller buffer only costs drops in bursts.
            let _ = socket.set_recv_buffer_size(bytes);
        }
        socket.set_nonblocking(true)?;
        sys::bind_packet(socket.as_fd(), ethertype, ifindex)?;
        Ok(PacketCapture { io: sys::register_readable(socket)?, family })
    }

    /// The IP version captured.
    pub fn family(&self) -> CaptureFamily {
        self.family
    }

    /// Ready when a frame may be waiting (then call [`PacketCapture::try_recv`] until `WouldBlock`).
    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_read_ready(cx).map_ok(|_guard| ())
    }

    /// Reads the next arriving frame into `buf` (the virtio-net header, then the frame; size `buf` for the
    /// header, a link-layer header and a 64 KiB IP packet); `WouldBlock` when none is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<CapturedFrame> {
        self.io.try_io(Interest::READABLE, |socket| {
            loop {
                let r = sys::recv_packet(socket.as_fd(), buf)?;
                if r.pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                let network_offset = r
                    .network_offset
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no PACKET_AUXDATA with the frame"))?;
                return Ok(CapturedFrame { len: r.len, network_offset, truncated: r.truncated });
            }
        })
    }

    /// Frames the kernel dropped (receive buffer full) since the previous call.
    pub fn drops(&self) -> io::Result<u64> {
        sys::packet_drops(self.io.get_ref().as_fd()).map(u64::from)
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::testns::{VethLink, skip_unless_root};
    use crate::{Interface, MulticastConfig, SendSocket, open_sender};

    /// Reads frames until `want` arrived or 10 s passed; returns (virtio-net header, IP packet) pairs.
    async fn collect(cap: &PacketCapture, want: usize) -> Vec<([u8; VIRTIO_NET_HDR_LEN], Vec<u8>)> {
        let mut buf = vec![0; 70_000];
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while out.len() < want {
            let ready = std::future::poll_fn(|cx| cap.poll_recv_ready(cx));
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                break;
            }
            loop {
                match cap.try_recv(&mut buf) {
                    Ok(f) => {
                        assert!(!f.truncated);
                        let hdr: [u8; VIRTIO_NET_HDR_LEN] = buf[..VIRTIO_NET_HDR_LEN].try_into().unwrap();
                        let ip = &buf[VIRTIO_NET_HDR_LEN + f.network_offset..f.len];
                        // MLD reports (Hop-by-Hop, then ICMPv6) pass the filter too: skip them.
                        if ip[0] >> 4 == 6 && ip[6] != 17 {
                            continue;
                        }
                        out.push((hdr, ip.to_vec()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        out
    }

    fn u16_at(h: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([h[at], h[at + 1]])
    }

    /// A GSO send over the veth arrives as one super-packet with gso_type UDP_L4 and the segment size;
    /// unicast UDP and other groups' families are filtered out.
    #[test]
    fn veth_gso_send_arrives_as_one_super_packet_with_its_segment_size() {
        if skip_unless_root("veth_gso_send_arrives_as_one_super_packet_with_its_segment_size") {
            return;
        }
        let link = VethLink::new().unwrap();
        let ifindex = link.b.if_index(VethLink::B_IF).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // Opened on a thread inside the namespace, registered with this runtime.
            let handle = tokio::runtime::Handle::current();
            let open = |family| {
                link.b.run(|| {
                    let _rt = handle.enter();
                    PacketCapture::open(ifindex, family, 4 << 20)
                })
            };
            let (cap4, cap6) = (open(CaptureFamily::V4).unwrap(), open(CaptureFamily::V6).unwrap());
            assert_eq!((cap4.family(), cap6.family()), (CaptureFamily::V4, CaptureFamily::V6));
            let iface = Interface::Name(VethLink::A_IF.into());
            let g4: SocketAddr = "232.9.9.9:5001".parse().unwrap();
            let g6: SocketAddr = "[ff3e::8000:99]:5001".parse().unwrap();
            let contents: Vec<u8> = (0..10 * 1000 + 300).map(|i| (i % 251) as u8).collect();
            for group in [g4, g6] {
                let cfg = MulticastConfig::new(group).with_interface(iface.clone());
                let (s, _) = link.a.run(|| open_sender(&cfg)).unwrap();
                let s = SendSocket::from_std(s).unwrap();
                assert!(s.gso_segments(1000) >= 11, "GSO available");
                // Unicast first: the filter drops it.
                let peer: SocketAddr = if group.is_ipv4() {
                    SocketAddr::new(VethLink::B_V4.into(), 9)
                } else {
                    SocketAddr::new(VethLink::B_V6.into(), 9)
                };
                s.send_one(peer, b"unicast").await.unwrap();
                s.send_segments(group, &contents, 1000).await.unwrap();
                s.send_one(group, b"single").await.unwrap();
            }
            for (cap, hlen) in [(&cap4, 20usize), (&cap6, 40)] {
                let got = collect(cap, 2).await;
                assert_eq!(got.len(), 2, "the super-packet and the single datagram, not the unicast one");
                let (h, p) = &got[0];
                assert_eq!(h[1], 5, "gso_type UDP_L4");
                assert_eq!(h[0] & 1, 1, "NEEDS_CSUM");
                assert_eq!(u16_at(h, 4), 1000, "gso_size");
                assert_eq!(p.len(), hlen + 8 + contents.len(), "unsegmented");
                assert_eq!(&p[hlen + 8..], &contents[..]);
                let (h, p) = &got[1];
                assert_eq!(h[1], 0, "no GSO");
                assert_eq!(&p[hlen + 8..], b"single");
            }
            // Nothing more waiting; nothing dropped.
            assert_eq!(cap4.drops().unwrap(), 0);
        });
    }
}
