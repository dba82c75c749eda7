//! Signing keys through hot reload, against the real binary: a rotation (new
//! key first, old one still published) applies without a restart, and the
//! development key generated when none is configured survives reloads.

use std::time::{Duration, Instant};

use orchestrator_tests::{Orchestrator, run_cli};

async fn jwks_kids(orch: &Orchestrator) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{}/idp/jwks", orch.base_url()))
        .await
        .expect("JWKS request")
        .json()
        .await
        .expect("JWKS JSON");
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

fn provider(keys: &str) -> String {
    format!(
        "oidcProvider:\n  issuer: http://127.0.0.1:{{port}}/idp\n  signingKeys: {keys}\n  clients:\n    - {{clientId: c, clientSecret: s3cret, redirectUris: [\"http://127.0.0.1:1/cb\"]}}\n"
    )
}

#[tokio::test]
async fn rotation_applies_through_hot_reload() {
    let old = run_cli(&["keys", "generate", "--algorithm", "ES256"], "")
        .await
        .stdout;
    let new = run_cli(&["keys", "generate", "--algorithm", "EdDSA"], "")
        .await
        .stdout;
    let mut orch = Orchestrator::start(
        &provider("[{id: old, algorithm: ES256, privateKey: \"${secret:old.pem}\"}]"),
        &[("old.pem", &old), ("new.pem", &new)],
    )
    .await;
    assert_eq!(jwks_kids(&orch).await, vec!["old"]);

    orch.update_config(&provider(
        "[{id: new, algorithm: EdDSA, privateKey: \"${secret:new.pem}\"}, {id: old, algorithm: ES256, privateKey: \"${secret:old.pem}\"}]",
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kids = jwks_kids(&orch).await;
        if kids == vec!["new", "old"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "JWKS still {kids:?}\n{}",
            orch.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        orch.metric("orchestrator_config_reloads_total{result=\"success\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn generated_dev_key_survives_reloads() {
    let mut orch = Orchestrator::start(&provider("[]"), &[]).await;
    let before = jwks_kids(&orch).await;
    assert_eq!(before.len(), 1);
    orch.update_config(&format!("{}  ssoSessionTtl: 1h\n", provider("[]")));
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        jwks_kids(&orch).await,
        before,
        "tokens signed before the reload still verify"
    );
    assert!(
        orch.all_logs().contains("DEVELOPMENT key"),
        "{}",
        orch.all_logs()
    );
}
