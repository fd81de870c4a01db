//! The session's AMBI metadata, as draft-ietf-mboned-ambi's `ietf-ambi` YANG
//! module and its example metadata describe it (inside `ietf-dorms`
//! metadata, in JSON): the digest profile, where the manifest stream is,
//! where each packet's sequence number is (`content-offset` in bytes from
//! the start of the UDP payload, `content-bits` wide), the hold times. The repair origin serves it at
//! [`h3m_proto::ambi::METADATA_PATH`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use h3m_proto::ambi::{DigestProfile, HashAlgorithm};

/// What the metadata describes.
#[derive(Debug, Clone)]
pub struct AmbiMetadata<'a> {
    /// The sender's source address.
    pub source: IpAddr,
    /// The group and port of the session's datagrams.
    pub group: SocketAddr,
    /// The digest profile.
    pub profile: &'a DigestProfile,
    /// The manifest stream's URL (`https://HOST:PORT/.well-known/h3m/ambi`).
    pub transport: &'a str,
    /// The session ID's length: the packet sequence number follows the
    /// first byte and the session ID.
    pub session_id_len: usize,
    /// How long a receiver holds a datagram waiting for its manifest.
    pub data_hold: Duration,
    /// How long a receiver holds a digest waiting for its datagram.
    pub digest_hold: Duration,
}

impl AmbiMetadata<'_> {
    /// The `ietf-dorms` / `ietf-ambi` JSON.
    pub fn to_json(&self) -> String {
        let algorithm = match self.profile.algorithm {
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Blake2b => "blake2b",
        };
        let stream = serde_json::json!({
            "id": self.profile.manifest_id.to_string(),
            "manifest-transport": self.transport,
            "hash-algorithm": algorithm,
            "hash-bits": self.profile.bits().to_string(),
            "identifier-type": "ietf-ambi:payload-content",
            "content-bits": "32",
            "content-offset": (1 + self.session_id_len).to_string(),
            "payload-type": "udp",
            "data-hold-time-ms": self.data_hold.as_millis().to_string(),
            "digest-hold-time-ms": self.digest_hold.as_millis().to_string(),
        });
        let doc = serde_json::json!({
            "ietf-dorms:dorms": { "metadata": { "sender": [{
                "source-address": self.source.to_string(),
                "group": [{
                    "group-address": self.group.ip().to_string(),
                    "udp-stream": [{
                        "port": self.group.port().to_string(),
                        "ietf-ambi:manifest-stream": [stream],
                    }],
                }],
            }]}}
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_names_the_profile_and_the_sequence_location() {
        let profile = DigestProfile::parse("blake2b/80", 0x0102_0304).unwrap();
        let meta = AmbiMetadata {
            source: "10.0.0.1".parse().unwrap(),
            group: "232.1.1.1:5001".parse().unwrap(),
            profile: &profile,
            transport: "https://10.0.0.1:4433/.well-known/h3m/ambi",
            session_id_len: 8,
            data_hold: Duration::from_secs(2),
            digest_hold: Duration::from_secs(10),
        };
        let v: serde_json::Value = serde_json::from_str(&meta.to_json()).unwrap();
        let sender = &v["ietf-dorms:dorms"]["metadata"]["sender"][0];
        assert_eq!(sender["source-address"], "10.0.0.1");
        let group = &sender["group"][0];
        assert_eq!(group["group-address"], "232.1.1.1");
        let udp = &group["udp-stream"][0];
        assert_eq!(udp["port"], "5001");
        let s = &udp["ietf-ambi:manifest-stream"][0];
        assert_eq!(s["id"], "16909060");
        assert_eq!(s["manifest-transport"], "https://10.0.0.1:4433/.well-known/h3m/ambi");
        assert_eq!((s["hash-algorithm"].as_str(), s["hash-bits"].as_str()), (Some("blake2b"), Some("80")));
        // The 4-byte packet number after the first byte and 8 bytes of session ID.
        assert_eq!((s["content-offset"].as_str(), s["content-bits"].as_str()), (Some("9"), Some("32")));
        assert_eq!(s["payload-type"], "udp");
        assert_eq!((s["data-hold-time-ms"].as_str(), s["digest-hold-time-ms"].as_str()), (Some("2000"), Some("10000")));
    }
}
