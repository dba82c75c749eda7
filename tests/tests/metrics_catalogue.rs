//! `docs/metrics.md` is the catalogue of every series on `/metrics`: this
//! runs an orchestrator through the events the series count (logins, a
//! proxied request, a policy refusal, an upstream that is down, a
//! back-channel logout, sign-out, a reload, traces) and checks that
//! what `/metrics` exports and what the catalogue lists agree: no
//! undocumented series, no documented one that vanished, the same type and
//! the same labels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orchestrator_tests::browser::{Browser, sign_out};
use orchestrator_tests::otlp::Collector;
use orchestrator_tests::{ClosedPort, Orchestrator, Setup, TestUpstream, run_cli};

const YAML: &str = r#"
traces:
  endpoint: "{collector}"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - {id: k1, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
      postLogoutRedirectUris: [http://127.0.0.1:{port}/]
      backchannelLogoutUri: http://127.0.0.1:{port}/.orchestrator/backchannel-logout
  users:
    - {username: alice, passwordHash: "${secret:hash}", claims: {groups: [eng]}}
appGateway:
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{port}/idp", clientId: gw, clientSecret: gw-secret, scopes: [openid, groups]}
    - {name: gone, issuer: "http://127.0.0.1:{dead}/", clientId: gw, clientSecret: gw-secret}
  apps:
    - {name: demo, host: "*", pathPrefix: /, upstream: "{upstream}", identityProvider: own}
    - {name: ops-only, host: "*", pathPrefix: /ops, upstream: "{upstream}", identityProvider: own, policy: {allowGroups: [ops]}}
    - {name: down, host: "*", pathPrefix: /down, upstream: "http://127.0.0.1:{dead}", identityProvider: own}
    - {name: lost, host: "*", pathPrefix: /lost, upstream: "{upstream}", identityProvider: gone}
"#;

/// Series the run above cannot reach, and why (each still must be in the
/// catalogue).
const NOT_EXERCISED: &[&str] = &[
    // Only after the backend evicted something (it must not).
    "orchestrator_cache_evictions_total",
    // Only for an unreadable record of another version.
    "orchestrator_cache_decode_misses_total",
    // Needs an upstream IdP (tests/tests/federation.rs).
    "orchestrator_oidc_upstream_logins_total",
    // Needs an ID token to expire (tests/tests/session_lifetime.rs).
    "orchestrator_gateway_session_renewals_total",
    // Needs a WebSocket (tests/tests/session_lifetime.rs).
    "orchestrator_gateway_tunnels_closed_total",
    // Needs a code redeemed twice (tests/tests/oidc_provider.rs).
    "orchestrator_oidc_replays_total",
    // Only when the collector fails (tests/tests/traces.rs).
    "orchestrator_trace_export_failures_total",
    // Only when the export queue is full (crates/orchestrator telemetry tests).
    "orchestrator_trace_spans_dropped_total",
];

/// One family: its type and label names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Families on `/metrics`: `# TYPE` lines and the labels of their samples.
fn exported(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| out.contains_key(*f)))
            .unwrap_or(name);
        if let Some(f) = out.get_mut(family) {
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split_once('=').unwrap().0;
                if key != "le" {
                    f.labels.insert(key.to_owned());
                }
            }
        }
    }
    out
}

/// Rows of the catalogue's table: `| name | type | labels | meaning |`.
fn catalogue() -> BTreeMap<String, Family> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .expect("docs/metrics.md");
    let mut out = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `orchestrator_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty() && *l != "—")
            .map(str::to_owned)
            .collect();
        let previous = out.insert(
            name.clone(),
            Family {
                kind: cells[2].to_owned(),
                labels,
            },
        );
        assert!(previous.is_none(), "{name} is listed twice");
    }
    out
}

#[tokio::test]
async fn metrics_and_their_catalogue_agree() {
    let collector = Collector::start().await;
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    // Held until the test ends: nobody else may listen there.
    let dead = ClosedPort::new();
    let yaml = YAML
        .replace("{collector}", &collector.url())
        .replace("{upstream}", &app.url())
        .replace("{dead}", &dead.port().to_string());
    let mut orch = Orchestrator::start_with(Setup {
        yaml: &yaml,
        secrets: &[("op-key.pem", key.as_str()), ("hash", hash.trim())],
        ..Setup::default()
    })
    .await;
    let base = orch.base_url();

    // A failed login, then a good one; a proxied request; a refusal; an
    // upstream that is down.
    let wrong = Browser::new();
    let _ = wrong
        .visit(&format!("{base}/page"), "alice", "not-it")
        .await;
    let b = Browser::new();
    assert_eq!(
        b.visit(&format!("{base}/page"), "alice", "pw")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        b.client()
            .get(format!("{base}/ops/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        b.client()
            .get(format!("{base}/down/x"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    // An IdP that does not answer.
    let lost = Browser::new();
    assert_eq!(
        lost.client()
            .get(format!("{base}/lost/x"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // A token request the provider refuses.
    let refused = reqwest::Client::new()
        .post(format!("{base}/idp/token"))
        .basic_auth("gw", Some("gw-secret"))
        .form(&[("grant_type", "authorization_code"), ("code", "made-up")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Sign-out: the gateway session ends, the provider's too, and its
    // back-channel logout token reaches the gateway.
    let out = sign_out(b.client(), &format!("{base}/.orchestrator/logout")).await;
    let end = out.headers()["location"].to_str().unwrap().to_owned();
    let _ = b.client().get(&end).send().await.unwrap();
    orch.wait_metric_at_least(
        "orchestrator_gateway_backchannel_logouts_total",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // A reload.
    orch.update_config(&format!("{yaml}\nlog:\n  level: debug\n"));
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    collector
        .wait_for(Duration::from_secs(15), |s| !s.is_empty())
        .await;

    let exported = exported(&orch.metrics().await);
    let documented = catalogue();
    let undocumented: Vec<&String> = exported
        .keys()
        .filter(|n| n.starts_with("orchestrator_") && !documented.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    let vanished: Vec<&String> = documented
        .keys()
        .filter(|n| !exported.contains_key(*n) && !NOT_EXERCISED.contains(&n.as_str()))
        .collect();
    assert!(
        vanished.is_empty(),
        "in docs/metrics.md but not on /metrics: {vanished:?}"
    );
    for (name, doc) in &documented {
        if let Some(live) = exported.get(name) {
            assert_eq!(live.kind, doc.kind, "{name}: type");
            assert_eq!(live.labels, doc.labels, "{name}: labels");
        }
    }
    for name in NOT_EXERCISED {
        assert!(documented.contains_key(*name), "{name} is not documented");
    }
}
