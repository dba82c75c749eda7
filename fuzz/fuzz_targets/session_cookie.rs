//! Session cookie decoding: `SessionId::parse` accepts exactly 43-character
//! base64url encodings of 32 bytes, and what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_gateway::SessionId;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = SessionId::parse(value) {
        assert_eq!(id.expose(), value);
        assert_eq!(value.len(), 43);
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    // A fresh id always parses.
    let fresh = SessionId::random();
    assert!(SessionId::parse(fresh.expose()).is_some());
});
