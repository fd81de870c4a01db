//! `h3m-recv --trust-hmac KEYID=HEX|@FILE` on `.datagrams` captures of a
//! session signed with an HMAC-SHA256 shared secret (RFC 9421
//! `hmac-sha256`, as `h3m-send --sign-hmac` signs): the right secret, inline
//! or from a file, writes the resource; another secret, or only public keys,
//! refuses it; unusable arguments are usage errors that never echo the secret.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, UNIX_EPOCH};

use h3m_proto::SessionId;
use h3m_proto::auth::{PushSigner, SignatureForms, SigningKey};
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const SECRET: [u8; 32] = [0x42; 32];
const BODY: &[u8] = b"shared-secret signed\n";

fn recv(input: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--input").arg(input).arg("--out").arg(out).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A `.datagrams` session of one resource signed with `SECRET` in 2020.
fn hmac_session() -> Vec<u8> {
    let date = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let signer =
        PushSigner::new(SigningKey::hmac_sha256(&SECRET).unwrap(), "shared-1", SignatureForms::Rfc9421).unwrap();
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection));
    let mut meta = ResourceMeta::file("hmac.txt", BODY.len() as u64, date);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, BODY).as_ref());
    meta.sha256 = Some(sha256);
    meta.last = true;
    let (mut req, mut resp) = (s.request_headers(&meta), s.response_headers(&meta));
    assert!(signer.sign_headers(&mut req, &mut resp, date).unwrap());
    assert!(resp.iter().any(|f| f.value.ends_with(b";alg=\"hmac-sha256\"")));
    let id = s.start_with_headers(&meta, &req, &resp).unwrap();
    s.write(id, BODY).unwrap();
    s.finish(id, None).unwrap();
    let now = Instant::now();
    let mut out = Vec::new();
    while let Some(d) = s.poll_transmit(now) {
        out.extend((d.len() as u32).to_be_bytes());
        out.extend(d);
    }
    out
}

#[test]
fn hmac_signed_sessions_need_the_shared_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("hmac.datagrams");
    std::fs::write(&input, hmac_session()).unwrap();
    let hex = hex::encode(SECRET);
    let secret_file = tmp.path().join("shared-1.hex");
    std::fs::write(&secret_file, format!("{hex}\n")).unwrap();

    for (name, arg) in [("inline", format!("shared-1={hex}")), ("file", format!("shared-1=@{}", secret_file.display()))]
    {
        let out = tmp.path().join(name);
        let o = recv(&input, &out, &["--trust-hmac", &arg]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        assert_eq!(std::fs::read(out.join("hmac.txt")).unwrap(), BODY, "{name}");
    }

    // Another secret, or public keys only: refused, nothing written.
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/ed25519.pub.pem");
    let other = format!("other={}", "17".repeat(32));
    for (name, args) in
        [("other secret", vec!["--trust-hmac", other.as_str()]), ("public key only", vec!["--trust", keys])]
    {
        let out = tmp.path().join(name.replace(' ', "-"));
        let o = recv(&input, &out, &args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        let want = if name == "other secret" {
            "refused: signature does not verify"
        } else {
            "refused: signature does not verify (no trusted key for `hmac-sha256` signatures)"
        };
        assert!(String::from_utf8_lossy(&o.stdout).contains(want), "{name}: {}", text(&o));
        assert!(!out.join("hmac.txt").exists(), "{name}");
    }

    // Freshness applies as with --trust: signed in 2020, --max-age 1 is stale.
    let out = tmp.path().join("stale");
    let o = recv(&input, &out, &["--trust-hmac", &format!("shared-1={hex}"), "--max-age", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("refused: stale (date Sun, 13 Sep 2020"), "{}", text(&o));

    // Usage errors (exit 2) name the key ID, never the secret.
    let out = tmp.path().join("usage");
    for (arg, want) in [
        ("short=0123456789abcdef", "--trust-hmac short: HMAC-SHA256 secret of 8 bytes (at least 32 are needed)"),
        ("odd=abc", "--trust-hmac odd: the HMAC secret is not an even number of hex digits"),
        ("noequals", "--trust-hmac noequals: expected KEYID=HEX or KEYID=@FILE"),
    ] {
        let o = recv(&input, &out, &["--trust-hmac", arg]);
        assert_eq!(o.status.code(), Some(2), "{arg}: {}", text(&o));
        assert!(text(&o).contains(want), "{arg}: {}", text(&o));
        assert!(!text(&o).contains("0123456789abcdef"), "{arg}: {}", text(&o));
    }
}
