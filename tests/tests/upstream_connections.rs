//! The upstream connections an HTTP/1.1 client connection keeps, through the
//! real binary: its requests to one upstream share one upstream connection
//! (driven by the client connection's task), two client connections do not
//! share one, a connection the upstream closed is replaced without an error,
//! a fifth upstream (served through the pool) causes no reconnects, bodies both
//! ways arrive whole, HTTP/2 clients are served through the pool, and an
//! upstream's response head over 16 KiB is a 502 on either path.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use orchestrator_tests::{Orchestrator, TestUpstream};
use serde_json::Value;
use tokio::net::TcpStream;

/// One public app per upstream, on hosts `app0.test` … .
fn config(upstreams: &[&TestUpstream]) -> String {
    let mut apps = String::new();
    for (i, u) in upstreams.iter().enumerate() {
        apps.push_str(&format!(
            "    - {{name: app{i}, host: app{i}.test, upstream: \"{}\", identityProvider: idp, publicPaths: [/]}}\n",
            u.url()
        ));
    }
    format!(
        "appGateway:\n  identityProviders:\n    - {{name: idp, issuer: \"http://127.0.0.1:9/idp\", clientId: gw}}\n  apps:\n{apps}"
    )
}

/// One HTTP/1.1 client connection to the orchestrator.
struct ClientConn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl ClientConn {
    async fn open(orch: &Orchestrator) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", orch.port()))
            .await
            .unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    /// Sends a request for `path` on `host` (a POST when `body` is not
    /// empty); the status and the echoed JSON (or the body's length).
    async fn send(&mut self, host: &str, path: &str, body: &'static [u8]) -> (u16, Value) {
        self.sender.ready().await.unwrap();
        let req = hyper::Request::builder()
            .method(if body.is_empty() { "GET" } else { "POST" })
            .uri(path)
            .header("host", host)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::from(bytes.len()));
        (status, json)
    }
}

#[tokio::test]
async fn a_client_connection_keeps_one_upstream_connection_per_upstream() {
    let upstream = TestUpstream::echo().await;
    let orch = Orchestrator::start(&config(&[&upstream]), &[]).await;

    let mut first = ClientConn::open(&orch).await;
    let mut ports = Vec::new();
    for i in 0..5 {
        let (status, echoed) = first.send("app0.test", &format!("/r{i}?n={i}"), b"").await;
        assert_eq!(status, 200, "{echoed}");
        // Origin form, as the pool sends it: apps read the target as a path.
        assert_eq!(echoed["target"], format!("/r{i}?n={i}"));
        ports.push(echoed["peerPort"].as_u64().unwrap());
    }
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "one client connection's requests came on several upstream connections: {ports:?}"
    );
    assert_eq!(upstream.connections(), 1);

    // Another client connection gets an upstream connection of its own.
    let mut second = ClientConn::open(&orch).await;
    let (_, echoed) = second.send("app0.test", "/other", b"").await;
    assert_ne!(echoed["peerPort"].as_u64().unwrap(), ports[0]);
    assert_eq!(upstream.connections(), 2);

    // Both keep theirs.
    let (_, echoed) = first.send("app0.test", "/again", b"").await;
    assert_eq!(echoed["peerPort"].as_u64().unwrap(), ports[0]);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn an_upstream_connection_the_upstream_closed_is_replaced() {
    let upstream = TestUpstream::echo().await;
    let orch = Orchestrator::start(&config(&[&upstream]), &[]).await;
    let mut conn = ClientConn::open(&orch).await;

    let (status, closing) = conn.send("app0.test", "/close/now", b"").await;
    assert_eq!(status, 200);
    // The upstream closed its end after that answer; the next request on the
    // same client connection goes on a new upstream connection, no error.
    for i in 0..3 {
        let (status, echoed) = conn.send("app0.test", &format!("/after/{i}"), b"").await;
        assert_eq!(status, 200, "{echoed}");
        assert_ne!(echoed["peerPort"], closing["peerPort"]);
    }
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn five_upstreams_on_one_client_connection_are_served_without_reconnects() {
    let upstreams = [
        TestUpstream::echo().await,
        TestUpstream::echo().await,
        TestUpstream::echo().await,
        TestUpstream::echo().await,
        TestUpstream::echo().await,
    ];
    let refs: Vec<&TestUpstream> = upstreams.iter().collect();
    let orch = Orchestrator::start(&config(&refs), &[]).await;
    let mut conn = ClientConn::open(&orch).await;
    // Twice round all five apps, interleaved on one client connection.
    let mut ports = vec![Vec::new(); upstreams.len()];
    for round in 0..2 {
        for (i, seen) in ports.iter_mut().enumerate() {
            let (status, echoed) = conn
                .send(&format!("app{i}.test"), &format!("/round/{round}"), b"")
                .await;
            assert_eq!(status, 200, "app{i}: {echoed}");
            // Kept (the first four) and pooled (the fifth) alike.
            assert_eq!(echoed["target"], format!("/round/{round}"), "app{i}");
            seen.push(echoed["peerPort"].as_u64().unwrap());
        }
    }
    for (i, u) in upstreams.iter().enumerate() {
        assert_eq!(u.requests(), 2, "app{i}");
        assert_eq!(u.connections(), 1, "app{i}: its connection was not reused");
        assert_eq!(ports[i][0], ports[i][1], "app{i}");
    }
}

#[tokio::test]
async fn bodies_both_ways_arrive_whole_on_a_kept_connection() {
    let upstream = TestUpstream::echo().await;
    let orch = Orchestrator::start(&config(&[&upstream]), &[]).await;
    let mut conn = ClientConn::open(&orch).await;
    const UPLOAD: &[u8] = &[b'u'; 300_000];
    for _ in 0..3 {
        let (status, echoed) = conn.send("app0.test", "/upload", UPLOAD).await;
        assert_eq!(status, 200);
        assert_eq!(echoed["bodyLen"], UPLOAD.len());
        // A streamed download after it, then a small request: each response
        // must have ended before the next request left on the same connection.
        let (status, len) = conn.send("app0.test", "/bytes/1000000", b"").await;
        assert_eq!(status, 200);
        assert_eq!(len, 1_000_000);
        let (status, echoed) = conn.send("app0.test", "/small", b"").await;
        assert_eq!(status, 200);
        assert_eq!(echoed["uri"], "/small");
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn http2_clients_are_served_through_the_pool() {
    let upstream = TestUpstream::echo().await;
    let orch = Orchestrator::start(&config(&[&upstream]), &[]).await;
    let stream = TcpStream::connect(("127.0.0.1", orch.port()))
        .await
        .unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Concurrent streams on one client connection.
    let requests = (0..8).map(|i| {
        let mut sender = sender.clone();
        async move {
            let req = hyper::Request::builder()
                .uri(format!("http://app0.test/h2/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let echoed: Value = serde_json::from_slice(&body).unwrap();
            (status, echoed["uri"].as_str().unwrap().to_owned())
        }
    });
    let answers = futures::future::join_all(requests).await;
    for (i, (status, uri)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200);
        assert_eq!(uri, format!("/h2/{i}"));
    }
}

#[tokio::test]
async fn a_response_head_over_16_kib_is_a_502_on_kept_and_pooled_connections() {
    let upstream = TestUpstream::echo().await;
    let orch = Orchestrator::start(&config(&[&upstream]), &[]).await;
    // A kept connection (HTTP/1.1 client).
    let mut conn = ClientConn::open(&orch).await;
    let (status, _) = conn.send("app0.test", "/big-head/12000", b"").await;
    assert_eq!(status, 200);
    let (status, _) = conn.send("app0.test", "/big-head/20000", b"").await;
    assert_eq!(status, 502);
    // The pool (HTTP/2 client).
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("app0.test", ([127, 0, 0, 1], orch.port()).into())
        .build()
        .unwrap();
    let get = |n: usize| {
        client
            .get(format!("http://app0.test:{}/big-head/{n}", orch.port()))
            .send()
    };
    assert_eq!(get(12_000).await.unwrap().status(), 200);
    assert_eq!(get(20_000).await.unwrap().status(), 502);
}
