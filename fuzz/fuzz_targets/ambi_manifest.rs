//! AMBI manifests: `Manifest::parse` at every digest length of the profiles
//! (8 to 64 bytes); what parses writes back to bytes that parse the same.
#![no_main]

use h3m_proto::ambi::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, bytes)) = data.split_first() else { return };
    let len = usize::from(len % 57) + 8;
    if let Ok(m) = Manifest::parse(bytes, len) {
        let mut out = Vec::new();
        m.write(&mut out).expect("a parsed manifest writes");
        assert_eq!(Manifest::parse(&out, len), Ok(m));
    }
});
