//! `h3m-recv`: receive the resources of an h3m (HTTP/3 over multicast QUIC)
//! session into a directory. Offline mode: from a capture file. See
//! [`h3m_receiver::offline`] for the run and the exit status and
//! [`h3m_receiver::report`] for the output format.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};
use h3m_proto::SessionId;
use h3m_receiver::offline::{self, Options};

const AFTER_HELP: &str = "\
Output (text): one line per resource on stdout:
  complete   PATH  BYTES bytes  sha256:HEX
  incomplete PATH  RECEIVED of LEN[+] bytes  missing a-b,c-  (REASON)
  refused    PATH  RECEIVED bytes  (REASON)
  failed     PATH  RECEIVED bytes  (REASON)
  unpromised push ID on stream STREAM
errors and a final `key=value` summary line on stderr.
With --json: one JSON object per event on stdout (push_promised, response_headers,
trailers, resource, unpromised_push, error, session_end, summary); body data is
not reported packet by packet.

Exit status:
  0  every promised push completed and was written (no unpromised push stream)
  1  at least one resource incomplete or refused, an unpromised push stream,
     or nothing received at all (wrong --session-id?)
  2  bad usage
  3  the input file is unreadable or malformed
  4  I/O error in the output directory";

/// Receive the resources of an h3m session (HTTP/3 over multicast QUIC,
/// draft-pardue-quic-http-mcast-07, as sent by nghq) into a directory.
#[derive(Debug, Parser)]
#[command(name = "h3m-recv", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    source: Source,

    /// The session ID (the packets' destination connection ID), in hex.
    #[arg(long, value_name = "HEX", default_value = "53657373696f6e204944", value_parser = parse_session_id)]
    session_id: SessionId,

    /// Directory the resources are written into (created if missing); each
    /// resource goes to its :path, made relative and checked.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Print one JSON object per event instead of text lines.
    #[arg(long)]
    json: bool,

    /// Take only UDP datagrams to this destination port (pcap input).
    #[arg(long, value_name = "P")]
    port: Option<u16>,

    /// Give up on a push after this many seconds without progress [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
    push_timeout: Option<Duration>,

    /// End the session after this many seconds without a packet; 0 never [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    idle_timeout: Option<Duration>,
}

/// Where the datagrams come from. Live reception (`--group`) is to come.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// Read the datagrams from a capture file: classic pcap, or `.datagrams`
    /// (4-byte big-endian length + payload records). Required for now: live
    /// multicast reception is not implemented yet.
    #[arg(long, value_name = "CAPTURE")]
    input: Option<PathBuf>,
}

fn parse_session_id(text: &str) -> Result<SessionId, String> {
    SessionId::from_hex(text).map_err(|e| e.to_string())
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a usable number of seconds"))
}

fn parse_positive_secs(text: &str) -> Result<Duration, String> {
    let d = parse_secs(text)?;
    if d.is_zero() { Err("the push timeout must be more than 0 seconds".to_owned()) } else { Ok(d) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(input) = cli.source.input else {
        // Unreachable: clap requires --input; kept for the live mode to come.
        eprintln!("h3m-recv: --input CAPTURE is required");
        return ExitCode::from(offline::ExitStatus::Usage.code());
    };
    let mut opts = Options::new(input, cli.out);
    opts.session_id = cli.session_id;
    opts.json = cli.json;
    opts.port = cli.port;
    if let Some(t) = cli.push_timeout {
        opts.push_timeout = t;
    }
    if let Some(t) = cli.idle_timeout {
        opts.idle_timeout = (!t.is_zero()).then_some(t);
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let outcome = offline::run(&opts, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(outcome.status.code())
}
