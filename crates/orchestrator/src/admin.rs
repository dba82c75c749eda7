//! The admin listener, separate from the main one so probes and scraping never
//! travel through the ingress. Routes:
//!
//! - `GET /healthz` — 200 while the process serves.
//! - `GET /readyz`  — 200 once config is loaded, listeners are bound and the
//!   required backends answer; 503 with a short JSON reason otherwise, and from
//!   the moment shutdown starts.
//! - `GET /metrics` — Prometheus text exposition.
//! - `POST /sessions/revoke` (form field `user`) — only when
//!   `admin.apiToken` is set, with `Authorization: Bearer <apiToken>`: ends
//!   every session of a user of the OpenID Provider and notifies its
//!   clients ([`orchestrator_oidc::Provider::revoke_user`]).
//!
//! Anything else is 404; another method on a known path is 405.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;

/// How long `/readyz` waits for a backend before calling it unhealthy.
const BACKEND_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves until `stop` flips to true.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = tokio::select! {
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::listener::stopped(&mut stop) => return,
        };
        let app = app.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move {
                    let started = Instant::now();
                    let resp = route(&app, req).await;
                    app.metrics
                        .admin
                        .request(resp.status().as_u16(), started.elapsed());
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == REVOKE_PATH {
        return revoke(app, req).await;
    }
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(app).await,
        _ => {
            let mut resp = text(StatusCode::OK, &app.metrics.render());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
    }
}

async fn readyz(app: &App) -> Response<Full<Bytes>> {
    let reason = match app.readiness.blocker() {
        Some(reason) => Some(reason.to_owned()),
        None => match tokio::time::timeout(BACKEND_CHECK_TIMEOUT, app.parts.cache.health()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!(
                "cache ({}) unavailable: {e}",
                app.parts.cache.backend()
            )),
            Err(_) => Some(format!(
                "cache ({}) did not answer in time",
                app.parts.cache.backend()
            )),
        },
    };
    let (status, body) = match reason {
        None => (StatusCode::OK, serde_json::json!({"status": "ready"})),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not ready", "reason": reason}),
        ),
    };
    let mut resp = text(status, &format!("{body}\n"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

const REVOKE_PATH: &str = "/sessions/revoke";
/// Largest revocation form read.
const MAX_FORM: usize = 4096;

/// `POST /sessions/revoke`: the admin API's one call.
async fn revoke(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let runtime = app.runtime();
    let Some(token) = runtime.config.admin.api_token.as_ref() else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        let mut resp = json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_token"}),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let Some(provider) = runtime.provider.as_ref() else {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no_provider", "error_description": "no oidcProvider is configured"}),
        );
    };
    let Ok(body) = http_body_util::Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
    else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request", "error_description": "form too large or unreadable"}),
        );
    };
    let body = body.to_bytes();
    let Some(user) = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.into_owned())
        .filter(|u| !u.is_empty())
    else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request", "error_description": "the form field user is required"}),
        );
    };
    match provider.revoke_user(&user).await {
        Ok(true) => json(StatusCode::OK, &serde_json::json!({"revoked": user})),
        Ok(false) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "unknown_user"}),
        ),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "temporarily_unavailable", "error_description": e.description}),
        ),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = text(status, &format!("{body}\n"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
