//! A real upstream app for end-to-end tests.
//!
//! - `GET /ws` with a WebSocket upgrade: echoes every message back.
//! - `/slow/<ms>/…`: waits `ms` milliseconds, then echoes.
//! - `/bytes/<n>`: streams `n` bytes of `x`.
//! - `/close/…`: echoes, then closes the connection (`Connection: close`).
//! - `/big-head/<n>`: echoes with an `x-big` response header of `n` bytes.
//! - anything else: a JSON echo of the request: `method`, `uri` (path and
//!   query exactly as received), `version`, `headers` (a list of
//!   `[name, value]`, repeats kept), `body` (UTF-8, lossy), `bodyLen` and
//!   `peerPort` (the port of the connection it came on).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// A running upstream; stops when dropped.
pub struct TestUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TestUpstream {
    /// Starts the echo upstream on a free loopback port (HTTP/1.1 and h2c).
    pub async fn echo() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        handle(req, peer.port())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(mut req: Request<Incoming>, peer_port: u16) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/ws") && req.headers().contains_key(hyper::header::UPGRADE) {
        return Ok(websocket(&mut req));
    }
    // A misbehaving upstream: switches any upgrade request to `proto`.
    if let Some((_, proto)) = path.rsplit_once("/switch-to/") {
        if req.headers().contains_key(hyper::header::UPGRADE) {
            let mut resp = Response::new(Full::new(Bytes::new()).boxed());
            *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            if let Ok(v) = hyper::header::HeaderValue::from_str(proto) {
                resp.headers_mut().insert(hyper::header::UPGRADE, v);
            }
            resp.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("Upgrade"),
            );
            return Ok(resp);
        }
    }
    if let Some(rest) = path.strip_prefix("/bytes/") {
        let n: usize = rest.parse().unwrap_or(0);
        let chunks = (0..n.div_ceil(16 * 1024)).map(move |i| {
            let len = (n - i * 16 * 1024).min(16 * 1024);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; len])))
        });
        let body = StreamBody::new(futures::stream::iter(chunks));
        return Ok(Response::new(BodyExt::boxed(body)));
    }
    if let Some(rest) = path.strip_prefix("/slow/") {
        let ms: u64 = rest
            .split('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // The request target as it came: `/p?q` (origin form) or
    // `http://host/p?q` (absolute form, which apps should never see).
    let target = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "method": method,
        "uri": uri,
        "target": target,
        "version": version,
        "headers": headers,
        "bodyLen": body.len(),
        "body": String::from_utf8_lossy(&body),
        "peerPort": peer_port,
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())).boxed());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(n) = path.strip_prefix("/big-head/").and_then(|n| n.parse().ok()) {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&"b".repeat(n)) {
            resp.headers_mut().insert("x-big", v);
        }
    }
    if path.starts_with("/close/") {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"no key")).boxed());
        *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return resp;
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}
