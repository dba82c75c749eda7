//! The upstream behind every target: as fast as a hyper server gets, so the
//! numbers measure the proxy in front of it and not the app.
//!
//! | request | response |
//! | --- | --- |
//! | `GET /large` | 200, 1 MiB, streamed in 64 KiB frames with a `Content-Length` |
//! | `POST /upload` (any size) | 200, the number of body bytes received, as text |
//! | `GET /assertion` | 200, the `X-Orchestrator-Assertion` header it received |
//! | anything else | 200, a 64-byte text body ([`SMALL_BODY`]) |

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Bytes of the `/large` response and of the upload the harness sends.
pub const LARGE_BYTES: usize = 1 << 20;
/// Size of one frame of the `/large` response.
const FRAME_BYTES: usize = 64 << 10;
/// The body of every small response.
pub const SMALL_BODY: &[u8; 64] =
    b"hello from the bench upstream: small authenticated GET payload\n\n";

type Body = http_body_util::Either<
    Full<Bytes>,
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

/// Serves `listener` until the task is dropped; one task per connection.
pub async fn serve(listener: TcpListener) {
    let large = Bytes::from(vec![b'x'; LARGE_BYTES]);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Small responses must leave at once, not wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
        let large = large.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, large.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` (use port 0 for a free one) and serves in a spawned task.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(local)
}

async fn respond(req: Request<Incoming>, large: Bytes) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/large") => {
            // Zero-copy slices of one buffer: the upstream costs next to nothing.
            let frames: Vec<_> = (0..LARGE_BYTES / FRAME_BYTES)
                .map(|i| {
                    Ok(Frame::data(
                        large.slice(i * FRAME_BYTES..(i + 1) * FRAME_BYTES),
                    ))
                })
                .collect();
            let body = StreamBody::new(futures::stream::iter(frames));
            Response::builder()
                .header("content-type", "application/octet-stream")
                .header("content-length", LARGE_BYTES)
                .body(http_body_util::Either::Right(body))
        }
        (&Method::GET, "/assertion") => {
            let jwt = req
                .headers()
                .get("x-orchestrator-assertion")
                .map(|v| Bytes::copy_from_slice(v.as_bytes()))
                .unwrap_or_default();
            Response::builder().body(http_body_util::Either::Left(Full::new(jwt)))
        }
        // An OTLP collector that takes every batch (the traced run's sink).
        (&Method::POST, "/v1/traces") => {
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            Response::builder().body(http_body_util::Either::Left(Full::new(Bytes::new())))
        }
        (&Method::POST, "/upload") => {
            let mut body = req.into_body();
            let mut received = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => received += f.data_ref().map_or(0, Bytes::len),
                    Err(_) => break,
                }
            }
            Response::builder()
                .header("content-type", "text/plain")
                .body(http_body_util::Either::Left(Full::new(Bytes::from(
                    received.to_string(),
                ))))
        }
        _ => Response::builder()
            .header("content-type", "text/plain")
            .body(http_body_util::Either::Left(Full::new(Bytes::from_static(
                SMALL_BODY,
            )))),
    };
    // Every builder input above is static and valid.
    Ok(resp.unwrap_or_else(|_| Response::new(http_body_util::Either::Left(Full::default()))))
}
