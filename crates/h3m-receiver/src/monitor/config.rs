//! The monitor's configuration: one session per line.
//!
//! ```text
//! # comments start with `#`; blank lines are skipped
//! h3m-07="239.255.0.1:2000"; session-id=2a; source-address="10.0.0.1"
//! name=news interface=eth0 h3m-07="239.255.0.2:2000"; session-id=2b
//! group=239.255.0.3:2000 source=10.0.0.1 session-id=2c interface=127.0.0.1 name=sport
//! ```
//!
//! A line is either an Alt-Svc value (parsed by
//! [`h3m_proto::altsvc::parse_one`], which takes the group, source, session
//! ID and keys from it), optionally preceded by `name=LABEL` and
//! `interface=ADDR|NAME`, or `KEY=VALUE` words: `group=ADDR:PORT`
//! (required), `source=ADDR`, `session-id=HEX` (default empty),
//! `interface=ADDR|NAME`, `name=LABEL` (default: the group, then `/` and the
//! session ID when it has one). Names are unique; at most
//! [`MAX_SESSIONS`] sessions and lines of at most [`MAX_LINE_LEN`] bytes.

use std::net::{IpAddr, SocketAddr};

use h3m_net::Interface;
use h3m_proto::SessionId;
use h3m_proto::aead::{KeyError, PacketKeys};
use h3m_proto::altsvc::{self, AltSvcError};

/// The most sessions one configuration may list.
pub const MAX_SESSIONS: usize = 256;

/// The longest line accepted, in bytes.
pub const MAX_LINE_LEN: usize = 8192;

/// The longest session name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// One session to watch.
#[derive(Clone)]
pub struct Entry {
    /// Its label in the output (`session` in the metrics).
    pub name: String,
    /// The group address and UDP port.
    pub group: SocketAddr,
    /// The SSM source (`None`: any-source multicast).
    pub source: Option<IpAddr>,
    /// The session ID every packet carries.
    pub session_id: SessionId,
    /// The interface to join on (`None`: the routing table's).
    pub interface: Option<Interface>,
    /// The packet keys of a protected session (`None`: cleartext).
    pub keys: Option<PacketKeys>,
    /// The line of the configuration it came from (1-based).
    pub line: usize,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("source", &self.source)
            .field("session_id", &self.session_id)
            .field("interface", &self.interface)
            .field("keys", &self.keys.as_ref().map(|k| k.suite()))
            .field("line", &self.line)
            .finish()
    }
}

/// Why a configuration was refused; every variant but [`ConfigError::Empty`]
/// names its line (1-based).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The line is longer than [`MAX_LINE_LEN`].
    #[error("line {line}: longer than {max} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// [`MAX_LINE_LEN`].
        max: usize,
    },
    /// An Alt-Svc value that does not parse.
    #[error("line {line}: Alt-Svc: {source}")]
    AltSvc {
        /// The line.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: AltSvcError,
    },
    /// A protected session whose keys are missing or unusable.
    #[error("line {line}: keys: {source}")]
    Keys {
        /// The line.
        line: usize,
        /// What is wrong with them.
        #[source]
        source: KeyError,
    },
    /// A word that is not `KEY=VALUE`.
    #[error("line {line}: `{word}` is neither KEY=VALUE nor an Alt-Svc value")]
    NotKeyValue {
        /// The line.
        line: usize,
        /// The word.
        word: String,
    },
    /// A key that is not one of `group`, `source`, `session-id`,
    /// `interface`, `name`.
    #[error("line {line}: unknown key `{key}`")]
    UnknownKey {
        /// The line.
        line: usize,
        /// The key.
        key: String,
    },
    /// The same key twice on a line.
    #[error("line {line}: `{key}` is given twice")]
    DuplicateKey {
        /// The line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse or does not fit (a group that is not
    /// multicast, a source of the other address family, ...).
    #[error("line {line}: bad {key} `{value}`: {reason}")]
    BadValue {
        /// The line.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// Why.
        reason: String,
    },
    /// A `KEY=VALUE` line without `group`.
    #[error("line {line}: no group=ADDR:PORT")]
    MissingGroup {
        /// The line.
        line: usize,
    },
    /// Two sessions with the same name.
    #[error("line {line}: name `{name}` is already used on line {first}")]
    DuplicateName {
        /// The line.
        line: usize,
        /// The name.
        name: String,
        /// The line that used it first.
        first: usize,
    },
    /// More than [`MAX_SESSIONS`] sessions.
    #[error("line {line}: more than {max} sessions")]
    TooManySessions {
        /// The line of the first session too many.
        line: usize,
        /// [`MAX_SESSIONS`].
        max: usize,
    },
    /// No session at all.
    #[error("no session in the configuration")]
    Empty,
}

/// Parses a whole configuration.
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.len() > MAX_LINE_LEN {
            return Err(ConfigError::LineTooLong { line, max: MAX_LINE_LEN });
        }
        let Some(entry) = parse_line(raw, line)? else { continue };
        if entries.len() == MAX_SESSIONS {
            return Err(ConfigError::TooManySessions { line, max: MAX_SESSIONS });
        }
        if let Some(first) = entries.iter().find(|e| e.name == entry.name) {
            return Err(ConfigError::DuplicateName { line, name: entry.name, first: first.line });
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(ConfigError::Empty);
    }
    Ok(entries)
}

/// Parses one line (`line` is its number): `None` for a blank or comment line.
pub fn parse_line(raw: &str, line: usize) -> Result<Option<Entry>, ConfigError> {
    let text = raw.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut fields = Fields::default();
    let mut rest = text;
    loop {
        let word = rest.split_whitespace().next().unwrap_or("");
        if word.is_empty() || word.starts_with("h3m") {
            break;
        }
        let Some((key, value)) = word.split_once('=') else {
            return Err(ConfigError::NotKeyValue { line, word: word.to_owned() });
        };
        fields.set(key, value, line)?;
        rest = rest.trim_start().get(word.len()..).unwrap_or("").trim_start();
    }
    let entry = if rest.is_empty() {
        fields.into_entry(line)?
    } else {
        if fields.group.is_some() || fields.source.is_some() || fields.session_id.is_some() {
            // The Alt-Svc value says where the session is; only a name and an
            // interface may go with it.
            let key = ["group", "source", "session-id"]
                .into_iter()
                .zip([fields.group.is_some(), fields.source.is_some(), fields.session_id.is_some()])
                .find_map(|(k, set)| set.then_some(k))
                .unwrap_or("group");
            return Err(ConfigError::BadValue {
                line,
                key,
                value: String::new(),
                reason: "not allowed with an Alt-Svc value (it comes from the value)".to_owned(),
            });
        }
        let adv = altsvc::parse_one(rest).map_err(|source| ConfigError::AltSvc { line, source })?;
        let keys = PacketKeys::from_advertisement(&adv).map_err(|source| ConfigError::Keys { line, source })?;
        Entry {
            name: fields.name.unwrap_or_else(|| default_name(adv.group, &adv.session_id)),
            group: adv.group,
            source: adv.source,
            session_id: adv.session_id,
            interface: fields.interface,
            keys,
            line,
        }
    };
    Ok(Some(entry))
}

/// The name of a session that has none: `GROUP:PORT`, then `/SESSION-ID`.
fn default_name(group: SocketAddr, session_id: &SessionId) -> String {
    if session_id.is_empty() { group.to_string() } else { format!("{group}/{}", session_id.to_hex()) }
}

/// The `KEY=VALUE` words of a line.
#[derive(Default)]
struct Fields {
    group: Option<SocketAddr>,
    source: Option<IpAddr>,
    session_id: Option<SessionId>,
    interface: Option<Interface>,
    name: Option<String>,
}

impl Fields {
    fn set(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigError> {
        let bad =
            |key: &'static str, reason: String| ConfigError::BadValue { line, key, value: value.to_owned(), reason };
        let duplicate = || ConfigError::DuplicateKey { line, key: key.to_owned() };
        match key {
            "group" => {
                let group: SocketAddr = value.parse().map_err(|e| bad("group", format!("{e}")))?;
                if !group.ip().is_multicast() {
                    return Err(bad("group", "not a multicast address".to_owned()));
                }
                if group.port() == 0 {
                    return Err(bad("group", "port 0".to_owned()));
                }
                if self.group.replace(group).is_some() {
                    return Err(duplicate());
                }
            }
            "source" => {
                let source: IpAddr = value.parse().map_err(|e| bad("source", format!("{e}")))?;
                if source.is_multicast() || source.is_unspecified() {
                    return Err(bad("source", "not a unicast address".to_owned()));
                }
                if self.source.replace(source).is_some() {
                    return Err(duplicate());
                }
            }
            "session-id" => {
                let id = SessionId::from_hex(value).map_err(|e| bad("session-id", e.to_string()))?;
                if self.session_id.replace(id).is_some() {
                    return Err(duplicate());
                }
            }
            "interface" => {
                let iface: Interface = value.parse().map_err(|e| bad("interface", format!("{e}")))?;
                if self.interface.replace(iface).is_some() {
                    return Err(duplicate());
                }
            }
            "name" => {
                if value.is_empty() || value.len() > MAX_NAME_LEN {
                    return Err(bad("name", format!("empty or longer than {MAX_NAME_LEN} bytes")));
                }
                if self.name.replace(value.to_owned()).is_some() {
                    return Err(duplicate());
                }
            }
            _ => return Err(ConfigError::UnknownKey { line, key: key.to_owned() }),
        }
        Ok(())
    }

    fn into_entry(self, line: usize) -> Result<Entry, ConfigError> {
        let group = self.group.ok_or(ConfigError::MissingGroup { line })?;
        if let Some(source) = self.source
            && source.is_ipv4() != group.is_ipv4()
        {
            return Err(ConfigError::BadValue {
                line,
                key: "source",
                value: source.to_string(),
                reason: "not of the group's address family".to_owned(),
            });
        }
        let session_id = self.session_id.unwrap_or(SessionId::EMPTY);
        Ok(Entry {
            name: self.name.unwrap_or_else(|| default_name(group, &session_id)),
            group,
            source: self.source,
            session_id,
            interface: self.interface,
            keys: None,
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_comments_and_blank_lines() {
        let text = "# two sessions\n\n\
            h3m-07=\"239.255.0.1:2000\"; session-id=2a; source-address=\"10.0.0.1\"  # an ad\n\
            group=239.255.0.2:2001 source=10.0.0.2 session-id=0b0c interface=127.0.0.1 name=sport\n\
            name=news interface=lo h3m-07=\"239.255.0.3:2002\"\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "239.255.0.1:2000/2a");
        assert_eq!(e[0].group, "239.255.0.1:2000".parse().unwrap());
        assert_eq!(e[0].source, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e[0].session_id.as_bytes(), &[0x2a]);
        assert_eq!(e[0].line, 3);
        assert!(e[0].keys.is_none());
        assert_eq!(e[1].name, "sport");
        assert_eq!(e[1].group, "239.255.0.2:2001".parse().unwrap());
        assert_eq!(e[1].session_id.as_bytes(), &[0x0b, 0x0c]);
        assert_eq!(e[1].interface, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(e[1].line, 4);
        assert_eq!(e[2].name, "news");
        assert_eq!(e[2].interface, Some(Interface::Name("lo".to_owned())));
        assert!(e[2].session_id.is_empty());
    }

    #[test]
    fn keyed_alt_svc_gets_its_keys() {
        let e = parse(
            "h3m-07=\"239.255.0.1:2000\"; session-id=2a; cipher-suite=1301; \
             key=00112233445566778899aabbccddeeff; iv=0123456789abcdef01234567",
        )
        .unwrap();
        assert!(e[0].keys.is_some());
    }

    fn err(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn each_error_names_its_line() {
        let ok = "group=239.255.0.1:2000\n";
        let long = format!("{ok}# {}", "x".repeat(MAX_LINE_LEN));
        assert!(matches!(err(&long), ConfigError::LineTooLong { line: 2, .. }));
        assert!(matches!(err(&format!("{ok}h3m-07=nonsense")), ConfigError::AltSvc { line: 2, .. }));
        assert!(matches!(
            err(&format!("{ok}h3m-07=\"239.255.0.2:2000\"; cipher-suite=1301")),
            ConfigError::Keys { line: 2, .. }
        ));
        assert!(matches!(err(&format!("{ok}\ngroup")), ConfigError::NotKeyValue { line: 3, .. }));
        assert!(matches!(err(&format!("{ok}group=239.255.0.2:1 port=3")), ConfigError::UnknownKey { line: 2, .. }));
        assert!(matches!(
            err(&format!("{ok}name=a group=239.255.0.2:1 name=b")),
            ConfigError::DuplicateKey { line: 2, .. }
        ));
        for bad in [
            "group=10.0.0.1:2000",
            "group=239.255.0.1",
            "group=239.255.0.2:0",
            "group=239.255.0.2:1 source=239.1.1.1",
            "group=239.255.0.2:1 source=::1",
            "group=239.255.0.2:1 session-id=xyz",
            "group=239.255.0.2:1 interface=",
            "source=10.0.0.1 h3m-07=\"239.255.0.2:1\"",
        ] {
            assert!(matches!(err(&format!("{ok}{bad}")), ConfigError::BadValue { line: 2, .. }), "{bad}");
        }
        assert!(matches!(err(&format!("{ok}name=x")), ConfigError::MissingGroup { line: 2 }));
        assert!(matches!(
            err(&format!("{ok}group=239.255.0.1:2000")),
            ConfigError::DuplicateName { line: 2, first: 1, .. }
        ));
        let many: String =
            (0..=MAX_SESSIONS).map(|i| format!("group=239.255.{}.{}:2000\n", i / 256, i % 256)).collect();
        assert!(
            matches!(err(&many), ConfigError::TooManySessions { line, max: MAX_SESSIONS } if line == MAX_SESSIONS + 1)
        );
        assert!(matches!(err("# nothing\n\n"), ConfigError::Empty));
        // The message names the line.
        assert!(err(&format!("{ok}bogus=1")).to_string().starts_with("line 2: "));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,300}") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_near_misses(words in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("group=239.255.0.1:2000".to_owned()),
                proptest::strategy::Just("h3m-07=\"239.255.0.1:2000\";".to_owned()),
                proptest::strategy::Just("session-id=".to_owned()),
                proptest::strategy::Just("#".to_owned()),
                proptest::strategy::Just("\n".to_owned()),
                "[a-z=:;\"0-9. -]{0,20}",
            ], 0..20)) {
            let _ = parse(&words.join(" "));
        }
    }
}
