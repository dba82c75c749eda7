//! Picks who serves a request on the main listener: the OIDC provider when
//! the request falls under its issuer's host and path, else the App Gateway,
//! else a 404.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::app::App;

/// The response body type of every handler.
pub(crate) type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Serves one request of the main listener.
pub(crate) async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<BoxBody> {
    let runtime = app.runtime();
    if let Some(provider) = &runtime.provider {
        let host = request_host(&req);
        if provider.matches(host.as_deref(), req.uri().path()) {
            return provider.handle(req, peer, tls).await;
        }
    }
    if let Some(gateway) = &runtime.gateway {
        return gateway.handle(req, peer, tls).await;
    }
    not_found()
}

/// The Host header, or the authority of an HTTP/2 (or absolute-form) request.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

fn not_found() -> Response<BoxBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(b"not found\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
