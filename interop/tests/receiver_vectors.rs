//! Every nghq scenario through the receiver state machine: header lists and
//! body SHA-256 as in `expected.json`.

use h3m_interop::{header_list, run, scenarios, sha256_hex};
use h3m_proto::receiver::{PushStatus, ReceiverConfig, SessionEndReason};

#[test]
fn every_scenario_decodes_as_expected() {
    let all = scenarios();
    assert_eq!(all.len(), 18);
    let mut pushes_checked = 0;
    for sc in &all {
        let out = run(ReceiverConfig::new(sc.session_id()), &sc.datagrams);
        let resources = sc.resources();
        assert_eq!(out.pushes.len(), resources.len(), "{}: pushes", sc.name);
        assert!(out.unpromised.is_empty(), "{}", sc.name);
        for p in resources {
            let id = p["push_id"].as_u64().unwrap();
            let got = &out.pushes[&id];
            assert_eq!(got.request, header_list(&p["request_headers"]), "{} push {id} request", sc.name);
            assert_eq!(got.response.as_ref(), Some(&header_list(&p["response_headers"])), "{} push {id}", sc.name);
            let summary = got.summary.as_ref().unwrap_or_else(|| panic!("{} push {id} unfinished", sc.name));
            assert_eq!(summary.status, PushStatus::Complete, "{} push {id}", sc.name);
            assert_eq!(summary.body_len, p["body_len"].as_u64().unwrap(), "{} push {id}", sc.name);
            assert_eq!(got.body.len() as u64, summary.body_len);
            assert_eq!(sha256_hex(&got.body), p["body_sha256"].as_str().unwrap(), "{} push {id}", sc.name);
            if let Some(file) = p["payload_file"].as_str() {
                let payload = std::fs::read(h3m_interop::vectors_dir().join(file)).unwrap();
                assert_eq!(got.body, payload, "{} push {id} payload", sc.name);
            }
            pushes_checked += 1;
        }
        // How each session ends: nghq's `connection: close`, or the goaway promise.
        let expected_end =
            if sc.name.contains("goaway") { SessionEndReason::Goaway } else { SessionEndReason::ConnectionClose };
        assert_eq!(out.session_ends, vec![expected_end], "{}", sc.name);
        assert_eq!(out.stats.malformed_packets + out.stats.foreign_session + out.stats.frame_errors, 0, "{}", sc.name);
    }
    assert_eq!(pushes_checked, 35);
}

#[test]
fn grease_and_control_streams_are_skipped_not_fatal() {
    let all = scenarios();
    let grease = all.iter().find(|s| s.name.contains("grease")).unwrap();
    let out = run(ReceiverConfig::new(grease.session_id()), &grease.datagrams);
    assert_eq!(out.stats.skipped_h3_frames, 1, "the reserved 0x21 frame");
    assert_eq!(out.pushes[&0].body.len(), 34, "nghq truncates this body to 0 bytes; we must not");
    let control = all.iter().find(|s| s.name.contains("control")).unwrap();
    let out = run(ReceiverConfig::new(control.session_id()), &control.datagrams);
    assert_eq!(out.stats.non_push_streams, 1);
}

#[test]
fn another_session_id_sees_nothing() {
    let sc = &scenarios()[0];
    let out = run(ReceiverConfig::new(h3m_proto::SessionId::from_hex("00").unwrap()), &sc.datagrams);
    assert!(out.pushes.is_empty());
    assert_eq!(out.stats.foreign_session, sc.datagrams.len() as u64);
    assert_eq!(out.session_ends, vec![SessionEndReason::EndOfInput]);
}
