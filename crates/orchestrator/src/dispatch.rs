//! Picks who serves a request on the main listener: the OIDC provider when
//! the request falls under its issuer's host and path, else the App Gateway,
//! else a 404.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use orchestrator_http::{ConnInfo, RequestIdentity, authority};

use crate::app::Runtime;

pub(crate) use orchestrator_http::body::BoxBody;

/// Serves one request of the main listener; with who it was served for
/// when the gateway served it (the provider puts that on the response, as
/// an extension, when traces are on).
pub(crate) async fn dispatch(
    runtime: &Runtime,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> (Response<BoxBody>, Option<RequestIdentity>) {
    // RFC 9112 §3.2: more than one Host is a 400. Every later decision (which
    // of provider or gateway, which app, the callback URL) reads the host, so
    // two of them could make two parts of this process see different requests.
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return (
            plain(StatusCode::BAD_REQUEST, "more than one Host header\n"),
            None,
        );
    }
    if authority_conflicts_with_host(&req) {
        return (
            plain(
                StatusCode::BAD_REQUEST,
                ":authority and Host name different hosts\n",
            ),
            None,
        );
    }
    if let Some(provider) = &runtime.provider {
        // The path first: checking the authority costs a copy of it.
        let path = req.uri().path();
        if provider.serves_path(path) && provider.matches(authority::of_request(&req), path) {
            // Boxed: the provider's future is large, and inline it would
            // enlarge (and be copied with) every proxied request's future.
            return (Box::pin(provider.handle(req, conn)).await, None);
        }
    }
    if let Some(gateway) = &runtime.gateway {
        let (resp, who) = gateway.serve(req, conn).await;
        return (resp, Some(who));
    }
    (not_found(), None)
}

/// RFC 9113 §8.3.1: an HTTP/2 request whose `Host` differs from its
/// `:authority` is malformed. Routing reads `:authority`, but an upstream or a
/// log may read `Host`: the two must never name different sites.
fn authority_conflicts_with_host<B>(req: &Request<B>) -> bool {
    if req.version() != http::Version::HTTP_2 {
        return false;
    }
    let (Some(authority), Some(host)) = (req.uri().authority(), req.headers().get(header::HOST))
    else {
        return false;
    };
    !host
        .as_bytes()
        .eq_ignore_ascii_case(authority.as_str().as_bytes())
}

fn not_found() -> Response<BoxBody> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn plain(status: StatusCode, text: &'static str) -> Response<BoxBody> {
    let mut resp = Response::new(orchestrator_http::body::full(Bytes::from_static(
        text.as_bytes(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
