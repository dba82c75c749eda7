//! Path normalisation and prefix matching: a normalised path starts with
//! `/`, has no dot or empty segments, is a fixed point of normalisation, and
//! prefix matching is segment-aware.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_gateway::NormalPath;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = NormalPath::parse(raw) else {
        return;
    };
    let s = p.as_str();
    assert!(s.starts_with('/'), "{raw:?} -> {s:?}");
    assert!(!s.contains("//"), "{raw:?} -> {s:?}");
    for seg in s.split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} -> {s:?}");
    }
    assert!(!s.contains(';') && !s.contains('\\'), "{raw:?} -> {s:?}");
    let again = NormalPath::parse(s).expect("a normalised path parses");
    assert_eq!(again.as_str(), s, "not idempotent for {raw:?}");
    // Under itself, and under "/"; never under a sibling with a longer name.
    assert!(p.is_under(s));
    assert!(p.is_under("/"));
    let sibling = format!("{}x", s.trim_end_matches('/'));
    if s != "/" {
        assert!(!p.is_under(&sibling), "{s:?} under {sibling:?}");
    }
    // `/public/` must not match a path that only starts with `/public` + more.
    if s.starts_with("/publicx") {
        assert!(!p.is_under("/public/") && !p.is_under("/public"));
    }
});
