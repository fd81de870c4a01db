//! Diagnostics for the binaries (feature `logging`): the `tracing` events and
//! spans of the h3m libraries printed on standard error, as text or JSON lines.
//!
//! The filter uses `tracing-subscriber`'s `Targets` syntax: a level (`off`,
//! `error`, `warn`, `info`, `debug`, `trace`), or `target=level` pairs
//! separated by commas (`h3m_receiver=debug,h3m_net=info`). The binaries take
//! it from `--log-level`, else from `RUST_LOG`, else `off`: their user-facing
//! lines (one per resource, the summary) are printed either way.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The binaries' logging options (flattened into their command lines).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Diagnostics on stderr: a level (off, error, warn, info, debug, trace)
    /// or target=level pairs (h3m_receiver=debug,h3m_net=info) [default:
    /// RUST_LOG, else off].
    #[arg(long, value_name = "FILTER", value_parser = check_filter)]
    pub log_level: Option<String>,
    /// How diagnostics are printed: text or json (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = clap::value_parser!(LogFormat))]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the subscriber these options ask for (see [`init`]).
    pub fn init(&self) -> Result<(), LogError> {
        init(&filter_from(self.log_level.as_deref()), self.log_format)
    }
}

fn check_filter(text: &str) -> Result<String, String> {
    parse_filter(text).map(|_| text.to_owned()).map_err(|e| e.to_string())
}

impl clap::ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Text, LogFormat::Json]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }))
    }
}

/// How events are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (time, level, target, span fields, message).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`, `spans`).
    Json,
}

/// A `--log-format` that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?} (text or json)")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, UnknownLogFormat> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse.
    #[error("bad log filter {filter:?}: {reason} (e.g. warn, debug or h3m_receiver=debug,h3m_net=info)")]
    Filter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging already set up")]
    AlreadySet,
}

/// Parses a filter (see the module documentation). A bare word must be a
/// level or a target (a crate or module path starting with `h3m`), so that a
/// misspelt level is an error rather than a filter that shows nothing.
pub fn parse_filter(filter: &str) -> Result<Targets, LogError> {
    let bad = |reason: String| LogError::Filter { filter: filter.to_owned(), reason };
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let is_level =
            ["off", "error", "warn", "info", "debug", "trace"].iter().any(|l| directive.eq_ignore_ascii_case(l));
        if !directive.contains('=') && !is_level && !directive.starts_with("h3m") {
            return Err(bad(format!("{directive:?} is neither a level nor an h3m target")));
        }
    }
    Targets::from_str(filter.trim()).map_err(|e| bad(e.to_string()))
}

/// The filter a binary uses: `--log-level` if given, else `RUST_LOG`, else `off`.
pub fn filter_from(arg: Option<&str>) -> String {
    arg.map(str::to_owned).or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "off".to_owned())
}

/// Installs the global subscriber: events passing `filter` go to standard
/// error in `format`. Nothing is installed for `off`.
pub fn init(filter: &str, format: LogFormat) -> Result<(), LogError> {
    let targets = parse_filter(filter)?;
    if filter.trim() == "off" {
        return Ok(());
    }
    let registry = tracing_subscriber::registry().with(targets);
    let result = match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false)).try_init()
        }
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_current_span(true))
            .try_init(),
    };
    result.map_err(|_| LogError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_formats_parse_or_say_why() {
        for ok in ["off", "warn", "debug", "h3m_receiver=debug,h3m_net=info", " info "] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        let err = parse_filter("loud").unwrap_err().to_string();
        assert!(err.starts_with("bad log filter \"loud\""), "{err}");
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("yaml".parse::<LogFormat>(), Err(UnknownLogFormat("yaml".into())));
    }
}
