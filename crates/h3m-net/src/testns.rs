//! Network namespaces and veth pairs for tests (feature `test-support`; needs root and iproute2's `ip`).
//!
//! ```no_run
//! use h3m_net::testns::{VethLink, skip_unless_root};
//! if skip_unless_root("my_test") { return; }
//! let link = VethLink::new().unwrap();
//! // Sockets created inside `run` live in that namespace, and can be used from any thread afterwards.
//! let sock = link.b.run(|| std::net::UdpSocket::bind("0.0.0.0:0")).unwrap();
//! // Both namespaces (and the veth pair) are deleted when `link` is dropped, also on panic.
//! ```
//!
//! Namespaces are named `h3mnet-<pid>-<n>`; [`NetNs::new`] also deletes leftovers of dead processes.

use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

const PREFIX: &str = "h3mnet-";

/// True when running as root (needed for namespaces).
pub fn is_root() -> bool {
    sys::is_root()
}

/// Returns true (after printing `SKIP: <test>: ...`) when the test cannot run because it is not root or
/// `ip` is missing. Use as `if skip_unless_root("name") { return; }`.
/// The line goes straight to the stderr file descriptor, so the test harness's output capture does not
/// hide it.
pub fn skip_unless_root(test: &str) -> bool {
    let reason = if !is_root() {
        "needs root (network namespaces)"
    } else if Command::new("ip").arg("-V").output().is_err() {
        "iproute2 `ip` not found"
    } else {
        return false;
    };
    let _ = writeln!(io::stderr(), "SKIP: {test}: {reason}");
    true
}

fn run_ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Deletes `h3mnet-<pid>-*` namespaces whose process no longer exists.
pub fn cleanup_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, _)) = rest.split_once('-') else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_ip(&["netns", "del", &name]);
        }
    }
}

/// A network namespace owned by the test; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Creates `h3mnet-<pid>-<n>` with `lo` up and multicast-capable.
    pub fn new() -> io::Result<NetNs> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        cleanup_stale();
        let name = format!("{PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run_ip(&["netns", "add", &name])?;
        let file = match File::open(format!("/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = run_ip(&["netns", "del", &name]);
                return Err(e);
            }
        };
        let ns = NetNs { name, file };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "set", "lo", "multicast", "on"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Runs `f` on a fresh thread moved into this namespace (`setns`) and returns its result; a panic in
    /// `f` is propagated. Sockets created by `f` stay in the namespace when used from other threads.
    pub fn run<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                sys::setns_net(self.file.as_fd())
                    .unwrap_or_else(|e| panic!("setns into network namespace {}: {e}", self.name));
                f()
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The index of interface `name` inside this namespace.
    pub fn if_index(&self, name: &str) -> io::Result<u32> {
        self.run(|| sys::if_nametoindex(name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run_ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Two namespaces `a` and `b` joined by a veth pair, with IPv4 and IPv6 (`nodad`) addresses and multicast
/// routes (`224.0.0.0/4`, `ff00::/8`) on the veth in both.
#[derive(Debug)]
pub struct VethLink {
    /// Namespace A (e.g. the sender).
    pub a: NetNs,
    /// Namespace B (e.g. the receiver).
    pub b: NetNs,
}

impl VethLink {
    /// Veth interface name in `a`.
    pub const A_IF: &'static str = "h3m-a";
    /// Veth interface name in `b`.
    pub const B_IF: &'static str = "h3m-b";
    /// IPv4 address of `a` (/24).
    pub const A_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
    /// IPv4 address of `b` (/24).
    pub const B_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
    /// IPv6 address of `a` (/64).
    pub const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, 0, 1);
    /// IPv6 address of `b` (/64).
    pub const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, 0, 2);

    /// Creates both namespaces and the link (the veth is created inside `a` with its peer in `b`, so
    /// nothing ever appears in the caller's namespace).
    pub fn new() -> io::Result<VethLink> {
        let a = NetNs::new()?;
        let b = NetNs::new()?;
        a.ip(&["link", "add", Self::A_IF, "type", "veth", "peer", "name", Self::B_IF, "netns", b.name()])?;
        for (ns, ifname, v4, v6) in [(&a, Self::A_IF, Self::A_V4, Self::A_V6), (&b, Self::B_IF, Self::B_V4, Self::B_V6)]
        {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ns.ip(&["-6", "addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"])?;
            ns.ip(&["link", "set", ifname, "up"])?;
            ns.ip(&["route", "add", "224.0.0.0/4", "dev", ifname])?;
            ns.ip(&["-6", "route", "add", "ff00::/8", "dev", ifname])?;
        }
        Ok(VethLink { a, b })
    }

    /// Adds a further address (`"10.213.0.3/24"` or `"fd00:213::3/64"`) to `a`'s veth (IPv6 with `nodad`).
    pub fn add_address_a(&self, cidr: &str) -> io::Result<()> {
        add_address(&self.a, Self::A_IF, cidr)
    }

    /// Adds a further address to `b`'s veth.
    pub fn add_address_b(&self, cidr: &str) -> io::Result<()> {
        add_address(&self.b, Self::B_IF, cidr)
    }
}

fn add_address(ns: &NetNs, ifname: &str, cidr: &str) -> io::Result<()> {
    if cidr.contains(':') {
        ns.ip(&["-6", "addr", "add", cidr, "dev", ifname, "nodad"])
    } else {
        ns.ip(&["addr", "add", cidr, "dev", ifname])
    }
}
