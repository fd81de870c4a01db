//! Network interfaces given by name, address or index, and their resolution.
//!
//! Resolution happens in the calling thread's network namespace (this matters for tests that move a
//! thread into a namespace with `setns`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::error::NetError;
use crate::sys;

/// A network interface, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interface {
    /// By name, e.g. `lo` or `eth0`.
    Name(String),
    /// By one of its addresses, e.g. `127.0.0.1` or `fd00::1`.
    Addr(IpAddr),
    /// By kernel interface index, e.g. `1`.
    Index(u32),
}

impl FromStr for Interface {
    type Err = NetError;

    /// Parses `"lo"` → `Name`, `"127.0.0.1"` / `"::1"` → `Addr`, `"3"` → `Index`.
    fn from_str(s: &str) -> Result<Self, NetError> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Interface::Addr(ip));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u32>().map(Interface::Index).map_err(|_| NetError::interface(s, "index out of range"));
        }
        if s.is_empty() || s.len() >= libc::IF_NAMESIZE || s.contains(['/', ' ', '\0']) {
            return Err(NetError::interface(s, "not an interface name, address or index"));
        }
        Ok(Interface::Name(s.to_owned()))
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interface::Name(n) => f.write_str(n),
            Interface::Addr(a) => write!(f, "{a}"),
            Interface::Index(i) => write!(f, "{i}"),
        }
    }
}

impl Interface {
    /// The kernel interface index.
    pub fn index(&self) -> Result<u32, NetError> {
        match self {
            Interface::Index(i) => Ok(*i),
            Interface::Name(n) => {
                sys::if_nametoindex(n).map_err(|error| NetError::Interface { interface: n.clone(), error })
            }
            Interface::Addr(a) => {
                let addrs = addresses(self)?;
                let (name, _) = addrs
                    .iter()
                    .find(|(_, ip)| ip == a)
                    .ok_or_else(|| NetError::interface(self, "no interface has this address"))?;
                sys::if_nametoindex(name).map_err(|error| NetError::Interface { interface: name.clone(), error })
            }
        }
    }

    /// The interface's name.
    pub fn name(&self) -> Result<String, NetError> {
        match self {
            Interface::Name(n) => Ok(n.clone()),
            _ => {
                let index = self.index()?;
                sys::if_indextoname(index).map_err(|error| NetError::Interface { interface: self.to_string(), error })
            }
        }
    }

    /// An IPv4 address of the interface: the address itself for `Addr(V4)`, otherwise the first IPv4
    /// address the interface has (`None` when it has none).
    pub fn ipv4(&self) -> Result<Option<Ipv4Addr>, NetError> {
        if let Interface::Addr(IpAddr::V4(a)) = self {
            return Ok(Some(*a));
        }
        let name = self.name()?;
        Ok(addresses(self)?.into_iter().find_map(|(n, ip)| match ip {
            IpAddr::V4(v4) if n == name => Some(v4),
            _ => None,
        }))
    }
}

fn addresses(iface: &Interface) -> Result<Vec<(String, IpAddr)>, NetError> {
    sys::interface_addresses().map_err(|error| NetError::Interface { interface: iface.to_string(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!("lo".parse::<Interface>().unwrap(), Interface::Name("lo".into()));
        assert_eq!("127.0.0.1".parse::<Interface>().unwrap(), Interface::Addr("127.0.0.1".parse().unwrap()));
        assert_eq!("::1".parse::<Interface>().unwrap(), Interface::Addr("::1".parse().unwrap()));
        assert_eq!("3".parse::<Interface>().unwrap(), Interface::Index(3));
        assert!("".parse::<Interface>().is_err());
        assert!("a-very-long-interface-name".parse::<Interface>().is_err());
        assert!("99999999999".parse::<Interface>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["lo", "127.0.0.1", "fd00::1", "3"] {
            assert_eq!(s.parse::<Interface>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn resolve_loopback() {
        let lo = Interface::Name("lo".into());
        let index = lo.index().unwrap();
        assert!(index > 0);
        assert_eq!(Interface::Index(index).name().unwrap(), "lo");
        assert_eq!(Interface::Addr("127.0.0.1".parse().unwrap()).index().unwrap(), index);
        assert_eq!(lo.ipv4().unwrap(), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(Interface::Index(index).ipv4().unwrap(), Some(Ipv4Addr::LOCALHOST));
        assert!(Interface::Name("h3m-nonexist0".into()).index().is_err());
        assert!(Interface::Addr("192.0.2.77".parse().unwrap()).index().is_err());
    }
}
