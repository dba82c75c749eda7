//! Request ids through the real binary (who may set one, where it goes) and
//! the templates folder's hot reload (a broken template keeps the old pages).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator_tests::{Orchestrator, TestUpstream};

/// The echo upstream's view of one header.
fn upstream_saw(body: &serde_json::Value, name: &str) -> Vec<String> {
    body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn request_ids_come_from_trusted_proxies_only_and_reach_the_upstream_and_the_log() {
    let upstream = TestUpstream::echo().await;
    // 127.0.0.5 plays the ingress; requests from 127.0.0.1 are a client's own.
    let yaml = format!(
        r#"
listen:
  address: 127.0.0.1:{{port}}
  trustedProxies: [127.0.0.5/32]
appGateway:
  identityProviders:
    - {{name: idp, issuer: "http://127.0.0.1:9/idp", clientId: c, clientSecret: s}}
  apps:
    - {{name: open, host: "*", pathPrefix: /, upstream: "{}", identityProvider: idp, publicPaths: [/]}}
"#,
        upstream.url()
    );
    let orch = Orchestrator::start(&yaml, &[]).await;
    let url = format!("http://127.0.0.1:{}/page", orch.port());
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };

    // A client's own id is replaced by a fresh one, everywhere.
    let resp = from("127.0.0.1")
        .get(&url)
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    let answered = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_ne!(answered, "chosen-by-the-client");
    assert_eq!(answered.len(), 32);
    assert_eq!(upstream_saw(&body, "x-request-id"), vec![answered.clone()]);

    // The ingress's id is kept; a malformed one is replaced.
    let resp = from("127.0.0.5")
        .get(&url)
        .header("x-request-id", "7f3c2a10-1d2e-4b5c-9a8b-0123456789ab")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-request-id"],
        "7f3c2a10-1d2e-4b5c-9a8b-0123456789ab"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        upstream_saw(&body, "x-request-id"),
        ["7f3c2a10-1d2e-4b5c-9a8b-0123456789ab"]
    );
    let resp = from("127.0.0.5")
        .get(&url)
        .header("x-request-id", "has spaces <and> markup")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 32);

    // Each id is on its request's access log line.
    for id in [answered.as_str(), "7f3c2a10-1d2e-4b5c-9a8b-0123456789ab"] {
        let field = format!("\"request_id\":\"{id}\"");
        orch.wait_for_log_line(
            |l| l.contains("\"target\":\"access\"") && l.contains(&field),
            Duration::from_secs(10),
        )
        .await;
    }
}

/// The provider's signed-out page, whose template the test overrides.
async fn signed_out_page(orch: &Orchestrator) -> String {
    reqwest::get(format!("{}/idp/end_session", orch.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_broken_template_on_reload_keeps_the_old_pages_until_it_is_fixed() {
    let templates = tempfile::tempdir().unwrap();
    let page = |text: &str| {
        format!("{{% extends \"base.html\" %}}{{% block content %}}<h1>{text}</h1>{{% endblock %}}")
    };
    let write = |text: &str| {
        let tmp = templates.path().join(".signed_out.html.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, templates.path().join("signed_out.html")).unwrap();
    };
    write(&page("First look"));
    let yaml = format!(
        "ui:\n  templatesDir: {}\noidcProvider:\n  issuer: \"http://127.0.0.1:{{port}}/idp\"\n",
        templates.path().display()
    );
    let orch = Orchestrator::start(&yaml, &[]).await;
    assert!(signed_out_page(&orch).await.contains("<h1>First look</h1>"));

    write("{% extends \"base.html\" %}{% block content %}<h1>{{ mesage }}</h1>{% endblock %}");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"error\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert!(signed_out_page(&orch).await.contains("<h1>First look</h1>"));
    assert!(
        orch.all_logs().contains("signed_out.html"),
        "the problem names the file"
    );

    write(&page("Second look"));
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        signed_out_page(&orch)
            .await
            .contains("<h1>Second look</h1>")
    );
}

/// A config edit that lands together with a broken template is rejected as a
/// whole; fixing the template then applies the edit (it is not lost).
#[tokio::test]
async fn a_config_edit_rejected_for_its_templates_applies_once_they_are_fixed() {
    let upstream = TestUpstream::echo().await;
    let templates = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let tmp = templates.path().join(".error.html.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, templates.path().join("error.html")).unwrap();
    };
    write("<h1>{{ title }}</h1>");
    let base = format!(
        "ui:\n  templatesDir: {}\noidcProvider:\n  issuer: \"http://127.0.0.1:{{port}}/idp\"\n",
        templates.path().display()
    );
    let mut orch = Orchestrator::start(&base, &[]).await;
    let page = format!("{}/page", orch.base_url());
    assert_eq!(reqwest::get(&page).await.unwrap().status(), 404);

    write("<h1>{{ titel }}</h1>");
    orch.update_config(&format!(
        "{base}appGateway:\n  identityProviders:\n    - {{name: idp, issuer: \"http://127.0.0.1:9/x\", clientId: c, clientSecret: s}}\n  apps:\n    - {{name: open, host: \"*\", pathPrefix: /, upstream: \"{}\", identityProvider: idp, publicPaths: [/]}}\n",
        upstream.url()
    ));
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"error\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(reqwest::get(&page).await.unwrap().status(), 404);

    write("<h1>{{ title }}!</h1>");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reqwest::get(&page).await.unwrap().status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was lost:\n{}",
            orch.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
