//! The only module with `unsafe`: thin wrappers over libc calls that socket2 does not offer (and the one
//! tokio registration that needs an `unsafe` promise about a descriptor).
//!
//! Every function here validates or fully initialises what it hands to the kernel; the callers
//! only see safe signatures.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `if_nametoindex(3)`: the index of the interface called `name` (in the calling thread's network namespace).
pub(crate) fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the function only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 { Err(io::Error::last_os_error()) } else { Ok(index) }
}

/// `if_indextoname(3)`: the name of interface `index`.
pub(crate) fn if_indextoname(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes the function may write, including the terminating NUL.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `buf` holds a NUL-terminated string of at most IF_NAMESIZE bytes.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// `getifaddrs(3)`: every (interface name, IP address) pair of the calling thread's network namespace.
pub(crate) fn interface_addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is released with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list returned by getifaddrs, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a sockaddr whose family field is always readable.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: the family says this is a sockaddr_in; read_unaligned copes with any alignment.
                let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this is a sockaddr_in6.
                let sin6 = unsafe { std::ptr::read_unaligned(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        // SAFETY: `ifa_name` is a non-null NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        out.push((name, ip));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no reference outlives it.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Writes `addr` (port 0) into a zeroed `sockaddr_storage`.
fn to_storage(addr: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match addr {
        IpAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
        }
        IpAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v6.octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
        }
    }
    storage
}

fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the borrow; `value` points to a fully initialised
    // `T` of exactly `size_of::<T>()` bytes, which the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `MCAST_JOIN_SOURCE_GROUP` (RFC 3678 protocol-independent SSM join): works for IPv4 and IPv6.
/// `ifindex` 0 lets the kernel pick the interface from the routing table.
pub(crate) fn join_source_group(fd: BorrowedFd<'_>, group: IpAddr, source: IpAddr, ifindex: u32) -> io::Result<()> {
    let level = match group {
        IpAddr::V4(_) => libc::IPPROTO_IP,
        IpAddr::V6(_) => libc::IPPROTO_IPV6,
    };
    let req =
        libc::group_source_req { gsr_interface: ifindex, gsr_group: to_storage(group), gsr_source: to_storage(source) };
    setsockopt(fd, level, libc::MCAST_JOIN_SOURCE_GROUP, &req)
}

/// `IP_MULTICAST_IF` with an `ip_mreqn` naming the interface by index (Linux).
pub(crate) fn set_multicast_if_v4_index(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
}

/// `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`: set a buffer size beyond `net.core.{r,w}mem_max` (needs CAP_NET_ADMIN).
pub(crate) fn force_buffer_size(fd: BorrowedFd<'_>, recv: bool, bytes: usize) -> io::Result<()> {
    let name = if recv { libc::SO_RCVBUFFORCE } else { libc::SO_SNDBUFFORCE };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt(fd, libc::SOL_SOCKET, name, &value)
}

/// True when the effective user id is 0.
#[cfg(feature = "test-support")]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `setns(fd, CLONE_NEWNET)`: moves the calling thread (only) into the network namespace `fd` refers to.
#[cfg(feature = "test-support")]
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is an open namespace file descriptor for the duration of the call; setns only
    // changes the calling thread's network namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt(SOL_PACKET, name, value)` with an `int` value (`PACKET_VNET_HDR`, `PACKET_AUXDATA`, ...).
pub(crate) fn set_packet_option(fd: BorrowedFd<'_>, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    setsockopt(fd, libc::SOL_PACKET, name, &value)
}

/// `bind(2)` of an `AF_PACKET` socket to EtherType `protocol` (host order) on interface `ifindex`.
pub(crate) fn bind_packet(fd: BorrowedFd<'_>, protocol: u16, ifindex: u32) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `fd` is open for the duration of the borrow; `addr` is a fully initialised sockaddr_ll of the
    // length passed, which the kernel only reads.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `getsockopt(SOL_PACKET, PACKET_STATISTICS)`: packets dropped by the kernel (receive buffer full) since
/// the previous call (the kernel resets the counters on every read).
pub(crate) fn packet_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
    let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `fd` is open; `stats` is writable for `len` bytes and `len` is a valid in/out length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 { Ok(stats.tp_drops) } else { Err(io::Error::last_os_error()) }
}

/// What one [`recv_packet`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketRecv {
    /// Octets written to the buffer.
    pub(crate) len: usize,
    /// The packet did not fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_MULTICAST`, `PACKET_OUTGOING`, ...).
    pub(crate) pkttype: u8,
    /// `tp_net` of the `PACKET_AUXDATA` control message (when enabled): where the network header starts
    /// in the frame.
    pub(crate) network_offset: Option<usize>,
}

/// Room for one `PACKET_AUXDATA` control message (CMSG_SPACE(20) = 40 on 64-bit), aligned like `cmsghdr`.
#[repr(C, align(8))]
struct AuxControl([u8; 64]);

/// One non-blocking `recvmsg(2)` on an `AF_PACKET` socket into `buf`, with its link-layer address and
/// `PACKET_AUXDATA`.
pub(crate) fn recv_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<PacketRecv> {
    // SAFETY: sockaddr_ll and msghdr are plain old data; all-zero is a valid value of each.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    let mut control = AuxControl([0; 64]);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `fd` is open for the duration of the borrow; every pointer in `msg` (name, the one iovec over
    // `buf`, control) refers to live, writable memory of exactly the length given next to it, and nothing
    // else accesses that memory during the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut network_offset = None;
    let aux_len = mem::size_of::<libc::tpacket_auxdata>();
    // SAFETY: `msg` was filled in by a successful recvmsg; msg_control / msg_controllen describe `control`
    // (the kernel only lowers msg_controllen), so CMSG_FIRSTHDR / CMSG_NXTHDR return either null or a header
    // lying within it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null, points into `control` (aligned for cmsghdr) and the kernel wrote the header.
        let header = unsafe { std::ptr::read_unaligned(cmsg) };
        // SAFETY: CMSG_LEN is pure arithmetic.
        let need = unsafe { libc::CMSG_LEN(aux_len as libc::c_uint) } as usize;
        if header.cmsg_level == libc::SOL_PACKET
            && header.cmsg_type == libc::PACKET_AUXDATA
            && header.cmsg_len as usize >= need
        {
            // SAFETY: the control message is at least CMSG_LEN(sizeof tpacket_auxdata) long, so its data holds
            // a whole tpacket_auxdata; read_unaligned copes with any alignment.
            let aux = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata) };
            network_offset = Some(usize::from(aux.tp_net));
        }
        // SAFETY: `cmsg` is a valid header of `msg`'s control buffer (see above).
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(PacketRecv {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        pkttype: addr.sll_pkttype,
        network_offset,
    })
}

/// Registers `socket` with the current tokio reactor for readability (`AsyncFd`; its safe constructor is
/// deprecated since tokio 1.53 because an arbitrary `AsRawFd` type may close or swap its descriptor).
pub(crate) fn register_readable(socket: socket2::Socket) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: a socket2::Socket owns its descriptor: it stays open, and `as_raw_fd` keeps returning it,
    // until the Socket is dropped, which happens only when the AsyncFd that now owns it is dropped (or
    // hands it back with into_inner). Nothing here exposes a way to replace or close it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`: a new inotify instance.
pub(crate) fn inotify_init() -> io::Result<std::fs::File> {
    // SAFETY: inotify_init1 takes only flags and returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful inotify_init1, so it is open and owned by nobody else.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(std::fs::File::from(owned))
}

/// `inotify_add_watch(2)`: watches `path` for the events in `mask`; the watch descriptor.
pub(crate) fn inotify_add_watch(fd: BorrowedFd<'_>, path: &std::path::Path, mask: u32) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `fd` is open for the duration of the borrow; `c` is a NUL-terminated string that outlives the
    // call and that the kernel only reads.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 { Err(io::Error::last_os_error()) } else { Ok(wd) }
}

/// `inotify_rm_watch(2)`.
pub(crate) fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the borrow; the call takes two integers.
    if unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Registers an owned descriptor (here an inotify instance) with the current tokio reactor for readability.
pub(crate) fn register_readable_file(file: std::fs::File) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    // SAFETY: a File owns its descriptor: it stays open, and `as_raw_fd` keeps returning it, until the File
    // is dropped, which happens only when the AsyncFd that now owns it is dropped (or hands it back with
    // into_inner). Nothing here exposes a way to replace or close it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// `UDP_GRO` on or off (Linux 5.0+; quinn-udp turns it on where it can).
pub(crate) fn set_udp_gro(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt(fd, libc::SOL_UDP, libc::UDP_GRO, &libc::c_int::from(on))
}

/// `setpriority(2)` on the calling thread alone (Linux keeps a nice value per
/// thread): `nice` from -20 (first) to 19 (last).
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes nothing; setpriority only reads its three integer arguments.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
