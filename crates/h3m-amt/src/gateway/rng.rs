//! Randomness for the gateway: the [`Rng`] trait it draws nonces and timer
//! jitter from, the operating system's generator ([`SystemRng`]), a seeded
//! one for simulations ([`XorShiftRng`]), and the randomised backoff and
//! jitter helpers built on them.

use std::time::Duration;

use super::GatewayConfig;

/// A source of random numbers for nonces and timer jitter.
pub trait Rng {
    /// A uniformly distributed 32-bit value.
    fn next_u32(&mut self) -> u32;
}

/// The operating system's CSPRNG (through `ring`).
pub struct SystemRng(ring::rand::SystemRandom);

impl Default for SystemRng {
    fn default() -> Self {
        SystemRng(ring::rand::SystemRandom::new())
    }
}

impl std::fmt::Debug for SystemRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemRng")
    }
}

impl Rng for SystemRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        // SystemRandom fails only when the OS has no entropy source at all;
        // then fall back to the clock-and-address mix below rather than panic.
        if ring::rand::SecureRandom::fill(&self.0, &mut b).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            b = (t.subsec_nanos() ^ (&b as *const _ as usize as u32).rotate_left(13)).to_be_bytes();
        }
        u32::from_be_bytes(b)
    }
}

/// A small deterministic generator (xorshift32): reproducible nonces and
/// jitter for simulations, tests and benchmarks. Not for real tunnels (use
/// [`SystemRng`]); a zero seed is replaced by 1.
#[derive(Debug, Clone)]
pub struct XorShiftRng(pub u32);

impl Rng for XorShiftRng {
    fn next_u32(&mut self) -> u32 {
        let mut x = if self.0 == 0 { 1 } else { self.0 };
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// RFC 7450 5.2.3.4.3: random in [initial, min(initial x 2^n, max)].
pub(super) fn backoff(rng: &mut dyn Rng, config: &GatewayConfig, attempts: u32) -> Duration {
    let lo = config.initial_backoff;
    let hi = lo.saturating_mul(1u32 << attempts.min(20)).min(config.max_backoff.max(lo));
    jitter(rng, lo, hi)
}

/// A uniformly random duration in [lo, hi].
pub(super) fn jitter(rng: &mut dyn Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_nanos() as f64;
    lo + Duration::from_nanos((span * (f64::from(rng.next_u32()) / f64::from(u32::MAX))) as u64)
}
