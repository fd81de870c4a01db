//! AMT relay under a membership flood, in process (no sockets): 2 M channel
//! requests, each a valid Membership Update (correct Response MAC) asking for
//! one more (S,G) in a group of its own (the costliest shape: every channel
//! needs its own group state; `shared-group` puts them all in one group).
//! Prints what the relay admitted and refused,
//! its heap (live and peak, counted by this binary's allocator), its state
//! estimate ([`Relay::state_bytes`]) against the budget, the process's peak
//! RSS (`VmHWM`) and the CPU time per Update; exits non-zero when the relay
//! went over its budget or the heap over the estimate.
//!
//! Scenarios (one per process, so each peak RSS is its own):
//!
//! - `one-gateway`: one IP address and port asks for 2 M channels.
//! - `one-ip`: one IP address, 2 000 ports, 1 000 channels each.
//! - `many-ips`: 2 000 IP addresses, 1 000 channels each.
//! - `ips-and-ports`: 500 IP addresses x 4 ports, 1 000 channels each.
//! - `shared-group`: 2 000 IP addresses, 1 000 channels each, all in one
//!   group (one source per channel: the cheapest shape per channel, where the
//!   global channel cap binds before the budget).
//!
//! Run: `cargo bench -p h3m-benches --bench amt_floods -- [SCENARIO...]` (all
//! when none is named) or `scripts/bench-floods-amt.sh`. `H3M_FLOOD_CHANNELS`
//! changes the 2 M.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use h3m_amt::gateway::XorShiftRng;
use h3m_amt::membership::{self, GroupRecord, RecordType};
use h3m_amt::message::Message;
use h3m_amt::relay::{Relay, RelayConfig};

/// The system allocator, counting live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SCENARIOS: [&str; 5] = ["one-gateway", "one-ip", "many-ips", "ips-and-ports", "shared-group"];
const RELAY: &str = "192.0.2.1:2268";
const SOURCE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// `(address count, ports per address)` of a scenario.
fn shape(name: &str) -> (u32, u32) {
    match name {
        "one-gateway" => (1, 1),
        "one-ip" => (1, 2000),
        "many-ips" | "shared-group" => (2000, 1),
        _ => (500, 4),
    }
}

/// The `VmHWM` line of /proc/self/status, in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Runs one scenario; `Err` when a bound was broken.
fn run(name: &str, channels: u32) -> Result<(), String> {
    let (ips, ports) = shape(name);
    let gateways = ips * ports;
    let per_gateway = channels.div_ceil(gateways);
    let shared = name == "shared-group";
    let relay_addr: SocketAddr = RELAY.parse().map_err(|e| format!("{e}"))?;
    let now = Instant::now();
    let config = RelayConfig::new(&[relay_addr.ip()]);
    let budget = config.max_state_bytes;
    let heap_before = LIVE.load(Ordering::Relaxed);
    let mut relay = Relay::new(config, Box::new(XorShiftRng(7)), now);
    let mut message = Vec::with_capacity(64);
    let mut sent = 0u64;
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    // Gateways take turns, one channel each, so every one is met by every limit.
    'flood: for k in 0..per_gateway {
        for g in 0..gateways {
            if sent == u64::from(channels) {
                break 'flood;
            }
            let (ip, port) = (g / ports, g % ports);
            let gw = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + ip)), 20_000 + port as u16);
            // Group 232.x.y.z unique per (gateway, k).
            let n = u64::from(g) * u64::from(per_gateway) + u64::from(k);
            let unique = n as u32 & 0x00ff_ffff;
            let (group, source) = if shared {
                (Ipv4Addr::new(232, 0, 0, 1), Ipv4Addr::from(0x0b00_0000 + unique))
            } else {
                (Ipv4Addr::from(0xe800_0000 + unique), SOURCE)
            };
            let record =
                GroupRecord { kind: RecordType::AllowNewSources, group: group.into(), sources: vec![source.into()] };
            let report = membership::build_report(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[record])
                .map_err(|e| format!("report: {e}"))?;
            let nonce = 1 + (n as u32);
            let mac = relay.response_mac(gw, nonce);
            message.clear();
            Message::MembershipUpdate { mac, nonce, report: &report }.encode(&mut message);
            relay.handle_datagram(now, relay_addr, gw, &message);
            while relay.poll_event().is_some() {}
            sent += 1;
        }
    }
    let cpu = cpu_time() - cpu0;
    let wall = wall0.elapsed();
    let heap = LIVE.load(Ordering::Relaxed) - heap_before;
    let estimate = relay.state_bytes();
    let s = relay.stats();
    println!(
        "amt-flood {name}: {sent} channel requests from {ips} address(es) x {ports} port(s): \
         admitted {} gateways {} channels; refused gateways table {} per-address {} budget {}, \
         channels per-gateway {} global {}",
        relay.gateway_count(),
        relay.channel_count(),
        s.refused_gateways,
        s.refused_gateways_per_source,
        s.refused_budget,
        s.refused_channels,
        s.refused_channels_global,
    );
    let hwm = vm_hwm_kib().map_or("unknown".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "amt-flood {name}: relay heap {:.1} MiB (estimate {:.1} MiB, budget {:.1} MiB; {:.0} bytes/channel), \
         process peak heap {:.1} MiB, peak RSS {hwm}; CPU {:.2} s = {:.2} us/update ({:.2} s wall)",
        mib(heap),
        mib(estimate),
        mib(budget),
        heap as f64 / relay.channel_count().max(1) as f64,
        mib(PEAK.load(Ordering::Relaxed)),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / sent.max(1) as f64,
        wall.as_secs_f64(),
    );
    if estimate > budget {
        return Err(format!("{name}: state estimate {estimate} over the budget {budget}"));
    }
    if heap > estimate {
        return Err(format!("{name}: heap {heap} over the estimate {estimate}: raise the per-item costs"));
    }
    drop(relay);
    Ok(())
}

fn main() -> ExitCode {
    let channels = match std::env::var("H3M_FLOOD_CHANNELS") {
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("amt-flood: H3M_FLOOD_CHANNELS={v}: not a positive integer");
                return ExitCode::from(2);
            }
        },
        Err(_) => 2_000_000,
    };
    // `cargo bench` passes `--bench`; every other argument names a scenario.
    let named: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for n in &named {
        if !SCENARIOS.contains(&n.as_str()) {
            eprintln!("amt-flood: unknown scenario {n} (one of {})", SCENARIOS.join(", "));
            return ExitCode::from(2);
        }
    }
    let chosen: Vec<&str> =
        if named.is_empty() { SCENARIOS.to_vec() } else { named.iter().map(String::as_str).collect() };
    let mut failed = false;
    for name in chosen {
        if let Err(e) = run(name, channels) {
            eprintln!("amt-flood: FAIL {e}");
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
