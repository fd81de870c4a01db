//! `h3m-monitor CONFIG`: watches the sessions CONFIG lists and reports which
//! are up, their rate, loss and last packet, as JSON lines and on
//! `/metrics`. See [`h3m_receiver::monitor`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use h3m_receiver::monitor::{config, driver};

const AFTER_HELP: &str = "\
CONFIG lists one session per line (`#` starts a comment):
  h3m-07=\"239.255.0.1:2000\"; session-id=2a; source-address=\"10.0.0.1\"
  name=news interface=eth0 h3m-07=\"239.255.0.2:2000\"; session-id=2b
  group=239.255.0.3:2000 source=10.0.0.1 session-id=2c interface=127.0.0.1 name=sport

Output: one JSON line per session every --interval (event \"status\"), one on
every up/down change (\"change\") and with --once one at the end (\"final\").
Exit status with --once: 0 all up, 1 any down, 2 usage or configuration error,
130 interrupted (Ctrl-C) before the end.";

/// Watches multicast sessions and reports which are up.
#[derive(Debug, Parser)]
#[command(name = "h3m-monitor", version, after_help = AFTER_HELP)]
struct Args {
    /// The sessions to watch, one per line.
    config: PathBuf,
    /// Seconds between status lines.
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    interval: f64,
    /// A session is down after this many seconds without a packet.
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    down_after: f64,
    /// Watch for this many seconds, print a final line per session and exit
    /// (0 if all are up, 1 if any is down).
    #[arg(long, value_parser = seconds)]
    once: Option<f64>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
}

/// A positive number of seconds (at most a year).
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 366.0 * 86_400.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("h3m-monitor: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let entries = match config::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("h3m-monitor: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let opts = driver::MonitorOptions {
        interval: Duration::from_secs_f64(args.interval),
        down_after: Duration::from_secs_f64(args.down_after),
        once: args.once.map(Duration::from_secs_f64),
        metrics: args.metrics,
        ..driver::MonitorOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("h3m-monitor: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let once = opts.once.is_some();
    let result = runtime.block_on(async {
        tokio::select! {
            r = driver::run(entries, &opts, &mut out, &mut err) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    match result {
        Ok(Some(true)) => ExitCode::SUCCESS,
        Ok(Some(false)) => ExitCode::from(1),
        // Stopped: watching until stopped is a success; a --once check that
        // did not finish is not.
        Ok(None) if once => ExitCode::from(130),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("h3m-monitor: {e}");
            ExitCode::from(2)
        }
    }
}
