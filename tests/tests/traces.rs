//! OpenTelemetry traces end to end: a real orchestrator exporting OTLP/HTTP
//! to a collector that decodes the protobuf. A gateway request, a login and
//! its code exchange arrive as spans with the right parents and attributes;
//! the upstream and our provider (the IdP, over HTTP) get `traceparent` of
//! the same trace; a client's `traceparent` is continued only from a
//! trusted proxy, and an unsampled one goes on unsampled with nothing
//! recorded; with the collector down requests still work and the
//! failed exports are counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator_tests::browser::Browser;
use orchestrator_tests::otlp::{Collector, Span};
use orchestrator_tests::{Orchestrator, Setup, TestUpstream, run_cli};
use serde_json::Value;

const YAML: &str = r#"
listen:
  address: 127.0.0.1:{port}
  trustedProxies: [{trusted}]
traces:
  endpoint: "{collector}"
  serviceName: orchestrator-under-test
  resourceAttributes: {deployment.environment.name: test}
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - {id: k1, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
  users:
    - {username: alice, passwordHash: "${secret:hash}"}
appGateway:
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{port}/idp", clientId: gw, clientSecret: gw-secret}
  apps:
    - {name: demo, host: "*", pathPrefix: /, upstream: "{upstream}", identityProvider: own}
"#;

/// A client's trace: W3C `traceparent` with this trace and parent id.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

async fn start(collector: &str, trusted: &str) -> (Orchestrator, TestUpstream) {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let yaml = YAML
        .replace("{collector}", collector)
        .replace("{trusted}", trusted)
        .replace("{upstream}", &app.url());
    let orch = Orchestrator::start_with(Setup {
        yaml: &yaml,
        secrets: &[("op-key.pem", key.as_str()), ("hash", hash.trim())],
        // Batches every 100 ms instead of 5 s: the test need not wait. A
        // collector's key, percent-encoded as the variable wants it.
        env: &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k%3Dv%2C1"),
        ],
        ..Setup::default()
    })
    .await;
    (orch, app)
}

/// The `traceparent` the echo upstream received.
fn upstream_traceparent(echo: &Value) -> Option<String> {
    echo["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == "traceparent")
        .and_then(|h| h[1].as_str())
        .map(str::to_owned)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Signs alice in, then asks the app's page again with the client's
/// `traceparent` (`CLIENT_TRACE`, `CLIENT_PARENT`).
async fn signed_in_request_with_client_trace(orch: &Orchestrator) -> reqwest::Response {
    let b = Browser::new();
    let page = format!("{}/page", orch.base_url());
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);
    b.client()
        .get(&page)
        .header(
            "traceparent",
            format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_gateway_request_a_login_and_its_code_exchange_are_traced() {
    let collector = Collector::start().await;
    let (orch, _app) = start(&collector.url(), "127.0.0.1/32").await;
    // A request through the trusted proxy (loopback here) continues its trace.
    let resp = signed_in_request_with_client_trace(&orch).await;
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    let sent_up = upstream_traceparent(&echo).expect("the upstream gets a traceparent");
    assert!(
        sent_up.starts_with(&format!("00-{CLIENT_TRACE}-")),
        "the upstream is in the client's trace: {sent_up}"
    );

    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == CLIENT_TRACE && s.name == "upstream")
                && spans.iter().any(|s| s.name == "oidc.code_exchange")
        })
        .await;
    assert!(spans.iter().all(|s| s.service == "orchestrator-under-test"));
    // Every export is protobuf and carries the configured header, decoded.
    for s in &spans {
        let header = |name: &str| {
            s.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/x-protobuf"));
        assert_eq!(header("x-collector-key"), Some("k=v,1"));
    }

    // The proxied request: a server span under the client's, named by its
    // route, with the HTTP conventions; the upstream call is its child,
    // and it is what the upstream's traceparent names.
    let root = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.kind == 2)
        .expect("the request's server span");
    assert_eq!(root.parent_span_id, CLIENT_PARENT);
    assert_eq!(root.name, "GET /");
    assert_eq!(root.attr("http.request.method"), Some("GET"));
    assert_eq!(root.attr("url.path"), Some("/page"));
    assert_eq!(root.attr("http.route"), Some("/"));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));
    assert_eq!(root.attr("orchestrator.app"), Some("demo"));
    let upstream = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.name == "upstream")
        .unwrap();
    assert_eq!(upstream.kind, 3, "a client span");
    assert_eq!(upstream.attr("http.response.status_code"), Some("200"));
    let session = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.name == "session.lookup")
        .expect("the session lookup");
    assert_eq!(session.parent_span_id, root.span_id);
    assert_eq!(upstream.parent_span_id, root.span_id);
    assert_eq!(
        sent_up,
        format!("00-{CLIENT_TRACE}-{}-01", upstream.span_id)
    );

    // Cache operations are client spans of their own, each under a span of
    // the request that made it (the request path's own spans, or a
    // `tracing` span inside them): none starts a trace.
    let ops: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == 3 && s.attr("db.system.name") == Some("memory"))
        .collect();
    assert!(!ops.is_empty(), "cache operations are traced");
    for op in ops {
        let parent = spans
            .iter()
            .find(|s| s.span_id == op.parent_span_id)
            .unwrap_or_else(|| panic!("{} has a parent", op.name));
        assert_eq!(parent.trace_id, op.trace_id);
    }

    // The login: the callback's span holds the code exchange, whose token
    // request reached our provider with its context (one trace, the
    // provider's server span a child of the exchange).
    let exchange = named(&spans, "oidc.code_exchange")[0];
    let callback = spans
        .iter()
        .find(|s| s.span_id == exchange.parent_span_id)
        .expect("the exchange's parent");
    assert_eq!(callback.name, "login.callback");
    // A `tracing` span made inside the request path's own span is its child.
    let callback_request = spans
        .iter()
        .find(|s| s.span_id == callback.parent_span_id)
        .expect("the callback's parent");
    assert_eq!(
        callback_request.kind, 2,
        "the callback request's server span"
    );
    assert_eq!(callback_request.trace_id, callback.trace_id);
    let token = spans
        .iter()
        .find(|s| s.kind == 2 && s.attr("http.route") == Some("/idp/token"))
        .expect("the provider's token request");
    assert_eq!(token.trace_id, exchange.trace_id);
    assert_eq!(token.parent_span_id, exchange.span_id);
    assert_eq!(token.name, "POST /idp/token");
    assert_eq!(token.attr("http.response.status_code"), Some("200"));
}

#[tokio::test]
async fn an_untrusted_clients_traceparent_starts_a_new_trace() {
    let collector = Collector::start().await;
    let (orch, _app) = start(&collector.url(), "10.0.0.0/8").await;
    let resp = signed_in_request_with_client_trace(&orch).await;
    let echo: Value = resp.json().await.unwrap();
    let sent_up = upstream_traceparent(&echo).expect("a traceparent of its own");
    assert!(
        !sent_up.contains(CLIENT_TRACE),
        "the client's trace was continued: {sent_up}"
    );
    let trace = sent_up.split('-').nth(1).unwrap().to_owned();
    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.trace_id == trace && s.kind == 2)
        })
        .await;
    let root = spans
        .iter()
        .find(|s| s.trace_id == trace && s.kind == 2)
        .unwrap();
    assert_eq!(root.parent_span_id, "", "a root span");
    assert!(spans.iter().all(|s| s.trace_id != CLIENT_TRACE));
}

#[tokio::test]
async fn a_trusted_proxys_unsampled_trace_goes_on_unsampled_and_records_nothing() {
    let collector = Collector::start().await;
    let (orch, _app) = start(&collector.url(), "127.0.0.1/32").await;
    let b = Browser::new();
    let page = format!("{}/page", orch.base_url());
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);
    let get = |trace: &str, flags: &str| {
        b.client()
            .get(&page)
            .header("traceparent", format!("00-{trace}-{CLIENT_PARENT}-{flags}"))
            .send()
    };
    let resp = get(CLIENT_TRACE, "00").await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    let sent_up = upstream_traceparent(&echo).expect("the trace goes on upstream");
    let parts: Vec<&str> = sent_up.split('-').collect();
    assert_eq!(parts[1], CLIENT_TRACE, "the client's trace: {sent_up}");
    assert_ne!(parts[2], CLIENT_PARENT, "under a span id of the proxy's");
    assert_eq!(parts[3], "00", "still not sampled");
    // A sampled request after it: its spans are exported after any of the
    // first one's would have been (spans go out in the order they end).
    let marker = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(get(marker, "01").await.unwrap().status(), 200);
    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.trace_id == marker && s.kind == 2)
        })
        .await;
    assert!(
        named(&spans, "session.lookup")
            .iter()
            .any(|s| s.trace_id == marker),
        "the sampled request's internal spans are there"
    );
    let unsampled: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == CLIENT_TRACE)
        .collect();
    assert!(
        unsampled.is_empty(),
        "spans of an unsampled trace: {unsampled:?}"
    );
}

#[tokio::test]
async fn with_the_collector_down_requests_work_and_failed_exports_are_counted() {
    // A port nobody listens on (held: nobody else may take it meanwhile).
    let closed = orchestrator_tests::ClosedPort::new();
    let dead = format!("http://127.0.0.1:{}", closed.port());
    let (orch, _app) = start(&dead, "127.0.0.1/32").await;
    let b = Browser::new();
    let page = format!("{}/page", orch.base_url());
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);
    for _ in 0..20 {
        assert_eq!(b.client().get(&page).send().await.unwrap().status(), 200);
    }
    orch.wait_metric_at_least(
        "orchestrator_trace_export_failures_total",
        1.0,
        Duration::from_secs(15),
    )
    .await;
}
