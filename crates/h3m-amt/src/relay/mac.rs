//! Stateless Response MACs: the HMAC-SHA256 secret, its rotation (the
//! previous secret is still accepted) and constant-time verification.

use std::net::{IpAddr, SocketAddr};

use ring::hmac;

use super::Relay;
use crate::gateway::Rng;
use crate::message::ResponseMac;

/// One MAC secret: an HMAC-SHA256 key drawn from the relay's [`Rng`].
pub(super) struct Secret {
    key: hmac::Key,
}

impl Secret {
    /// A fresh 256-bit secret from `rng`.
    pub(super) fn generate(rng: &mut dyn Rng) -> Secret {
        let mut bytes = [0u8; 32];
        for c in bytes.chunks_exact_mut(4) {
            c.copy_from_slice(&rng.next_u32().to_be_bytes());
        }
        Secret { key: hmac::Key::new(hmac::HMAC_SHA256, &bytes) }
    }

    /// The Response MAC of `gateway` and `nonce`: the first 48 bits of
    /// HMAC-SHA256(secret, gateway IP || gateway port || nonce).
    pub(super) fn mac(&self, gateway: SocketAddr, nonce: u32) -> ResponseMac {
        let mut data = [0u8; 22];
        let n = match gateway.ip() {
            IpAddr::V4(a) => {
                data[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                data[..16].copy_from_slice(&a.octets());
                16
            }
        };
        data[n..n + 2].copy_from_slice(&gateway.port().to_be_bytes());
        data[n + 2..n + 6].copy_from_slice(&nonce.to_be_bytes());
        let tag = hmac::sign(&self.key, &data[..n + 6]);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&tag.as_ref()[..6]);
        mac
    }
}

/// Constant-time comparison of two MACs.
fn mac_eq(a: &ResponseMac, b: &ResponseMac) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Relay {
    /// Makes a new secret current and keeps the old one as the previous.
    pub(super) fn rotate(&mut self) {
        let new = Secret::generate(&mut *self.rng);
        self.previous = Some(std::mem::replace(&mut self.current, new));
        self.stats.secret_rotations += 1;
    }

    /// Whether `mac` matches `gateway` and `nonce` under the current or the
    /// previous secret (counting a match under the previous one).
    pub(super) fn verify_mac(&mut self, gateway: SocketAddr, nonce: u32, mac: &ResponseMac) -> bool {
        if mac_eq(&self.current.mac(gateway, nonce), mac) {
            return true;
        }
        if self.previous.as_ref().is_some_and(|p| mac_eq(&p.mac(gateway, nonce), mac)) {
            self.stats.mac_previous_secret += 1;
            return true;
        }
        false
    }
}
