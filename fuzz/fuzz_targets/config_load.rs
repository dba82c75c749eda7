//! Config parsing and secret references: any YAML text, with a secrets dir
//! and environment fed from a map, must load or fail with errors — never
//! panic — and no secret value read through a reference may appear in an
//! error message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator_config::{MapSources, load_str};

const SECRET: &str = "s3cr3t-value-never-in-errors";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = MapSources::default()
        .file("/secrets/pw", SECRET)
        .file("/secrets/key.pem", SECRET)
        .env("ORCHESTRATOR__LOG__LEVEL", "debug")
        .env("TOKEN", SECRET);
    // A secret's value typed into the config itself is the user's own text,
    // which errors may quote (found by this target: a key named after it).
    if text.contains(SECRET) {
        return;
    }
    let text = format!("secretsDir: /secrets\n{text}");
    if let Err(errors) = load_str(&text, "fuzz.yaml", &sources) {
        let shown = errors.to_string();
        assert!(!shown.contains(SECRET), "secret leaked into: {shown}");
    }
});
