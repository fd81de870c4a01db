//! Parsing rates such as `10M`, `1.5G`, `800k`, `2000000`, `max` or `unpaced`.

/// A rate string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate {input:?}: {reason} (expected e.g. \"max\", \"unpaced\", \"800k\", \"10M\", \"1.5G\" or \"2000000\" bits/s)"
)]
pub struct ParseRateError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// What `"max"` means: the fastest rate an `h3m-recv` was measured to keep without loss on a 2-vCPU VM
/// (2026-12-07), sender and receiver on the same two cores: 1 GiB over loopback at 6 Gbit/s intact in
/// every run (8 Gbit/s lost 3 % of it: two SHA-256 passes and two processes then need more than two
/// cores), and 100 MiB through a veth between two namespaces (the side-by-side harness of the README's
/// Performance section) intact at 6, 8 and 12 Gbit/s with the receiver's default 64 MiB buffer. A
/// receiver whose buffer is clamped to 4 MiB (no `CAP_NET_ADMIN`, `net.core.rmem_max` at 4 MiB) kept
/// 4 Gbit/s, and lost data in one run of six at 6: raise `rmem_max` there, or pace lower.
pub const MAX_KEPT_RATE: u64 = 6_000_000_000;

/// Parses a rate in bits per second with an optional SI (decimal) suffix `k`/`K`, `M`, `G` or `T`, and an
/// optional trailing `bit/s` or `bps`: `"10M"` = 10 000 000, `"1.5G"` = 1 500 000 000. `"max"` (any case)
/// is [`MAX_KEPT_RATE`]; `"unpaced"` gives `None` (no pacing at all). Zero and fractions of a bit are
/// rejected.
pub fn parse_rate(s: &str) -> Result<Option<u64>, ParseRateError> {
    let err = |reason| ParseRateError { input: s.to_owned(), reason };
    let t = s.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(Some(MAX_KEPT_RATE));
    }
    if t.eq_ignore_ascii_case("unpaced") {
        return Ok(None);
    }
    let t = t.strip_suffix("bit/s").or_else(|| t.strip_suffix("bps")).unwrap_or(t).trim_end();
    let (num, mult): (&str, u128) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('M') => (&t[..t.len() - 1], 1_000_000),
        Some('G') => (&t[..t.len() - 1], 1_000_000_000),
        Some('T') => (&t[..t.len() - 1], 1_000_000_000_000),
        Some(c) if c.is_ascii_digit() || c == '.' => (t, 1),
        Some(_) => return Err(err("unknown unit suffix")),
        None => return Err(err("empty")),
    };
    let num = num.trim_end();
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(err("no digits"));
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("not a number"));
    }
    if int.len() > 20 || frac.len() > 18 {
        return Err(err("too many digits"));
    }
    let int_v: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err("not a number"))? };
    let frac_v: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| err("not a number"))? };
    let scale = 10u128.pow(frac.len() as u32);
    let frac_bits = frac_v * mult;
    if !frac_bits.is_multiple_of(scale) {
        return Err(err("fractions of a bit per second"));
    }
    let total = int_v * mult + frac_bits / scale;
    if total == 0 {
        return Err(err("the rate must be above zero (use \"unpaced\" for no pacing)"));
    }
    u64::try_from(total).map(Some).map_err(|_| err("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        assert_eq!(parse_rate("max"), Ok(Some(MAX_KEPT_RATE)));
        assert_eq!(parse_rate("MAX"), Ok(Some(6_000_000_000)));
        assert_eq!(parse_rate("unpaced"), Ok(None));
        assert_eq!(parse_rate(" Unpaced "), Ok(None));
        assert_eq!(parse_rate("10M"), Ok(Some(10_000_000)));
        assert_eq!(parse_rate("1.5G"), Ok(Some(1_500_000_000)));
        assert_eq!(parse_rate("800k"), Ok(Some(800_000)));
        assert_eq!(parse_rate("800K"), Ok(Some(800_000)));
        assert_eq!(parse_rate("2000000"), Ok(Some(2_000_000)));
        assert_eq!(parse_rate(" 2T "), Ok(Some(2_000_000_000_000)));
        assert_eq!(parse_rate("0.5M"), Ok(Some(500_000)));
        assert_eq!(parse_rate(".25G"), Ok(Some(250_000_000)));
        assert_eq!(parse_rate("100Mbps"), Ok(Some(100_000_000)));
        assert_eq!(parse_rate("100 Mbit/s"), Ok(Some(100_000_000)));
        assert_eq!(parse_rate("1.000001M"), Ok(Some(1_000_001)));
    }

    #[test]
    fn rejected() {
        for s in ["", "M", "0", "0k", "abc", "10X", "1.2.3M", "1.5", "1e6", "-5M", "10m", "99999999999999999999T", "."]
        {
            assert!(parse_rate(s).is_err(), "{s:?} should be rejected");
        }
        let e = parse_rate("10X").unwrap_err();
        assert!(e.to_string().contains("10X"));
    }
}
