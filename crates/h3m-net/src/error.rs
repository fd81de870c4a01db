//! Errors (a failing setup step plus the OS error) and non-fatal warnings.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A socket setup step that failed, with the operating-system error as its source.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `socket(2)` failed.
    #[error("creating the UDP socket failed")]
    Socket(#[source] io::Error),
    /// `bind(2)` to `addr` failed.
    #[error("binding the UDP socket to {addr} failed")]
    Bind {
        /// The address the socket was to be bound to.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// Joining the group (ASM when `ssm_source` is `None`, else SSM) failed.
    #[error(
        "joining multicast group {group}{} on interface {} failed",
        ssm_source.map(|s| format!(" from source {s}")).unwrap_or_default(),
        interface.as_deref().unwrap_or("(chosen by the routing table)")
    )]
    Join {
        /// The multicast group.
        group: IpAddr,
        /// The SSM source, if any.
        ssm_source: Option<IpAddr>,
        /// The interface as configured (name, address or index), if any.
        interface: Option<String>,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// A socket option could not be set; the string names it (e.g. `"IP_MULTICAST_IF"`).
    #[error("setting socket option {option} failed")]
    SetOption {
        /// The option's name.
        option: &'static str,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// An interface could not be parsed or resolved (no such interface, no address of the needed family...).
    #[error("interface {interface}: cannot use it")]
    Interface {
        /// The interface as written by the user.
        interface: String,
        /// What went wrong.
        #[source]
        error: io::Error,
    },
    /// The configuration is inconsistent (e.g. an IPv6 source for an IPv4 group, a non-multicast group).
    #[error("invalid multicast configuration: {0}")]
    Config(String),
    /// Registering the socket with the tokio reactor or with quinn-udp failed.
    #[error("registering the socket for async I/O failed")]
    Runtime(#[source] io::Error),
}

impl NetError {
    pub(crate) fn opt(option: &'static str) -> impl FnOnce(io::Error) -> NetError {
        move |error| NetError::SetOption { option, error }
    }

    pub(crate) fn interface(interface: impl fmt::Display, msg: impl Into<String>) -> NetError {
        NetError::Interface {
            interface: interface.to_string(),
            error: io::Error::new(io::ErrorKind::NotFound, msg.into()),
        }
    }
}

/// Which socket buffer a [`Warning::BufferClamped`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    /// `SO_RCVBUF`.
    Receive,
    /// `SO_SNDBUF`.
    Send,
}

/// Something that did not stop the socket from working but degrades it; each variant's `Display` says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The kernel granted a smaller socket buffer than requested (bursts may overflow it and be dropped).
    BufferClamped {
        /// Receive or send buffer.
        buffer: BufferKind,
        /// Bytes requested.
        requested: usize,
        /// Bytes granted, as usable payload space (on Linux: half of what `getsockopt` reports, since the
        /// kernel doubles the value to account for its bookkeeping overhead).
        got: usize,
        /// The sysctl that caps it (`net.core.rmem_max` or `net.core.wmem_max`).
        sysctl: &'static str,
    },
    /// `IP_MULTICAST_ALL` / `IPV6_MULTICAST_ALL` could not be cleared (old kernel). The socket is bound to
    /// the group address, so datagrams for other groups are still filtered by destination address.
    MulticastAllUnsupported {
        /// The OS error text.
        error: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::BufferClamped { buffer, requested, got, sysctl } => {
                let which = match buffer {
                    BufferKind::Receive => "receive",
                    BufferKind::Send => "send",
                };
                write!(
                    f,
                    "UDP {which} buffer: requested {requested} bytes but the kernel granted only {got}; \
                     bursts may be dropped. Raise the limit with `sysctl -w {sysctl}={requested}` \
                     (or run with CAP_NET_ADMIN, which lets h3m force the size)"
                )
            }
            Warning::MulticastAllUnsupported { error } => write!(
                f,
                "could not clear IP_MULTICAST_ALL ({error}); the socket may also see groups joined by other \
                 sockets on this host for the same port. Use a kernel >= 4.20 or distinct ports per group"
            ),
        }
    }
}

/// Decides whether a socket buffer was clamped: `requested` is what was asked for, `reported` what
/// `getsockopt(SO_RCVBUF/SO_SNDBUF)` returned. Linux doubles the stored value, so the usable size is half
/// of `reported`. Returns the usable size when it is below the request.
pub fn buffer_clamped(requested: usize, reported: usize) -> Option<usize> {
    let usable = if cfg!(any(target_os = "linux", target_os = "android")) { reported / 2 } else { reported };
    (usable < requested).then_some(usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_detection() {
        // Linux reports twice the granted size.
        assert_eq!(buffer_clamped(8 << 20, 16 << 20), None);
        assert_eq!(buffer_clamped(8 << 20, 2 * 4194304), Some(4194304));
        assert_eq!(buffer_clamped(212992, 425984), None);
        assert_eq!(buffer_clamped(1 << 30, 2147483646), Some(1073741823));
    }

    #[test]
    fn warning_display_says_what_to_do() {
        let w = Warning::BufferClamped {
            buffer: BufferKind::Receive,
            requested: 8388608,
            got: 4194304,
            sysctl: "net.core.rmem_max",
        };
        let s = w.to_string();
        assert!(s.contains("sysctl -w net.core.rmem_max=8388608"), "{s}");
        assert!(s.contains("receive"), "{s}");
    }

    #[test]
    fn join_error_display() {
        let e = NetError::Join {
            group: "232.1.1.1".parse().unwrap(),
            ssm_source: Some("10.0.0.1".parse().unwrap()),
            interface: Some("eth1".into()),
            error: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert_eq!(e.to_string(), "joining multicast group 232.1.1.1 from source 10.0.0.1 on interface eth1 failed");
        assert!(std::error::Error::source(&e).is_some());
    }
}
