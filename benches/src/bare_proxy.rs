//! The floor of the stack: the least an HTTP/1.1 reverse proxy on hyper and
//! tokio does, so the harness can show what any proxy built on them costs
//! before it does anything of its own.
//!
//! One task per client connection drives both that connection (hyper's
//! `server::conn::http1`) and one upstream connection of its own (hyper's
//! `client::conn::http1`): every request is handed to the upstream as it came
//! (no header rewriting, no routing, no access control) and the response back
//! as it came, bodies streamed. It is the shape of the issue's "60-line hyper
//! proxy" and of the gateway's kept upstream connections, without the
//! gateway.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The upstream's body as it came, or the proxy's own error page.
type Body = Either<Incoming, Full<Bytes>>;

/// Serves `listener` until the task is dropped, forwarding to `upstream`.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(client, upstream));
    }
}

/// One client connection and its own upstream connection, in one task.
async fn connection(client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(stream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let Ok((sender, upstream_conn)) =
        hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(stream)).await
    else {
        return;
    };
    // The server side asks one request at a time of the upstream side; the
    // lock is held only to check readiness and to hand the request over.
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req| forward(sender.clone(), req));
    let server = http1::Builder::new().serve_connection(TokioIo::new(client), service);
    tokio::select! {
        _ = server => {}
        _ = upstream_conn => {}
    }
}

async fn forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let lock = || sender.lock().unwrap_or_else(PoisonError::into_inner);
    let sent = match poll_fn(|cx| lock().poll_ready(cx)).await {
        Ok(()) => {
            let response = lock().send_request(req);
            response.await
        }
        Err(e) => Err(e),
    };
    Ok(match sent {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
                b"upstream failed\n",
            ))));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        }
    })
}
