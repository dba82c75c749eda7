//! JWT parsing: arbitrary Bearer tokens at /userinfo and arbitrary
//! `id_token_hint`s at /end_session are refused (4xx), never a panic or 500.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = http::Request::get("http://op.test/idp/userinfo")
        .header("host", "op.test")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
    {
        let (status, _) = common::serve(req);
        assert!(
            (400..500).contains(&status),
            "userinfo accepted {token:?}: {status}"
        );
    }
    let form = format!(
        "id_token_hint={}&post_logout_redirect_uri=http%3A%2F%2Fapp.test%2Fbye",
        token
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let req = http::Request::post("http://op.test/idp/end_session")
        .header("host", "op.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .expect("request");
    let _ = common::serve(req);
});
