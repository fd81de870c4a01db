//! `h3m-monitor`'s configuration parser: any text gives at most 256 sessions
//! or a typed error naming a line that exists, never a panic.
#![no_main]

use h3m_receiver::monitor::config::{self, ConfigError, MAX_SESSIONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(text) {
        Ok(sessions) => assert!(!sessions.is_empty() && sessions.len() <= MAX_SESSIONS),
        Err(ConfigError::Empty) => {}
        Err(e) => {
            let message = e.to_string();
            let line: usize = message
                .strip_prefix("line ")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no line in {message:?}"));
            assert!((1..=text.split('\n').count()).contains(&line), "{message}");
        }
    }
});
