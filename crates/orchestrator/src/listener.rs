//! The main listener: accepts TCP (and TLS when configured), serves HTTP/1.1
//! and HTTP/2 with hyper-util's auto builder, bounded header size and header
//! read time, and hands each request to [`crate::dispatch`]. Connections are
//! tracked so shutdown can drain them. An HTTP/1.1 connection's task also
//! drives the upstream connections its requests keep ([`ConnUpstreams`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use orchestrator_config::ListenConfig;
use orchestrator_http::proxies::{ip_text, is_trusted};
use orchestrator_http::request_id::{self, RequestId};
use orchestrator_http::trace_context::{self, HttpAttributes, StringValue};
use orchestrator_http::upstream_conn::ConnUpstreams;
use orchestrator_http::{ConnInfo, RequestIdentity};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::access_log::AccessLine;
use crate::app::App;

/// Resolves once `stop` says true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here, inside.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Binds the main listener; the error names the key and the address.
pub(crate) async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{key}: cannot listen on {addr}: {e}"))
}

/// The connection builder for the main listener's limits.
pub(crate) fn builder(cfg: &ListenConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    builder
}

/// Accepts until `stop` flips to true; returns the tracker of live connections.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let listen_cfg = app.runtime().config.listen.clone();
    let builder = Arc::new(builder(&listen_cfg));
    let slots = Arc::new(Semaphore::new(listen_cfg.max_connections));
    loop {
        // A free slot first: at the limit, new connections wait in the kernel's
        // accept queue instead of costing memory here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            res = listener.accept() => res,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: log, back off briefly, keep the listener.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let tls = app.tls_acceptor();
        let watcher = graceful.watcher();
        let handshake_timeout = listen_cfg.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // The upstream connections this client connection keeps: driven
            // below, with the connection, in this task.
            let upstreams = ConnUpstreams::new();
            let service = {
                let app = app.clone();
                let is_tls = tls.is_some();
                let upstreams = upstreams.clone();
                // The peer's address as its spans record it, made once.
                let peer_text = trace_context::enabled()
                    .then(|| StringValue::from(Arc::<str>::from(ip_text(peer.ip()))));
                service_fn(move |mut req: hyper::Request<Incoming>| {
                    let app = app.clone();
                    let peer_text = peer_text.clone();
                    // HTTP/2 streams are tasks of their own: they use the pool.
                    let upstreams =
                        (req.version() <= hyper::Version::HTTP_11).then(|| upstreams.clone());
                    async move {
                        let started = Instant::now();
                        // One runtime per request: the access-log switch and the
                        // dispatch read the same config even across a reload.
                        let runtime = app.runtime();
                        let trusted = is_trusted(&runtime.config.listen.trusted_proxies, peer.ip());
                        let id = request_id(&mut req, trusted);
                        // A clone of the URI shares its bytes: no copy of the path.
                        let access = runtime
                            .config
                            .log
                            .access_log
                            .then(|| (req.method().clone(), req.uri().clone(), req.version()));
                        let span = trace_span(&req, &id, peer_text, is_tls, trusted);
                        // Boxed once here: the wrappers below then move a
                        // pointer, not the whole request future (kilobytes).
                        let handled = id.clone().scope(Box::pin(crate::dispatch::dispatch(
                            &runtime,
                            req,
                            ConnInfo {
                                peer,
                                tls: is_tls,
                                upstreams,
                            },
                        )));
                        let (mut resp, who) = trace_context::within(span.as_ref(), handled).await;
                        let who = who.or_else(|| resp.extensions_mut().remove::<RequestIdentity>());
                        // The span ends here, with the response's head.
                        if let Some(mut span) = span {
                            end_trace_span(&mut span, resp.status(), who.as_ref());
                        }
                        resp.headers_mut()
                            .insert(request_id::HEADER, id.header_value());
                        let elapsed = started.elapsed();
                        app.metrics.main.request(resp.status().as_u16(), elapsed);
                        if let Some((method, uri, version)) = access {
                            let (app_name, user) = who.map_or((None, None), |w| (w.app, w.user));
                            app.access.write(&AccessLine {
                                method: &method,
                                path: uri.path(),
                                version,
                                status: resp.status().as_u16(),
                                duration: elapsed,
                                peer,
                                app: app_name.as_deref().unwrap_or("-"),
                                user: user.as_deref().unwrap_or("-"),
                                request_id: id.as_str(),
                            });
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                })
            };
            match tls {
                Some(acceptor) => {
                    // A client that never finishes the handshake must not hold a task forever.
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = upstreams.drive(watcher.watch(conn)).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = upstreams.drive(watcher.watch(conn)).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    graceful
}

/// The request's span when traces are on (`None` otherwise: no cost):
/// OpenTelemetry's HTTP server conventions, the path without its query,
/// the request id; continued from the client's `traceparent` only when a
/// trusted proxy sent it. Routes fill `http.route` and the name.
fn trace_span(
    req: &hyper::Request<Incoming>,
    id: &RequestId,
    peer: Option<StringValue>,
    tls: bool,
    trusted: bool,
) -> Option<trace_context::Span> {
    if !trace_context::enabled() {
        return None;
    }
    let method = trace_context::method_name(req.method());
    // Built only when the request is sampled.
    let http = || HttpAttributes {
        method: Some(method),
        uri: Some(req.uri().clone()),
        scheme: Some(if tls { "https" } else { "http" }),
        peer,
        request_id: Some(id.to_shared().into()),
        ..HttpAttributes::NONE
    };
    trace_context::Span::server(method, http, req.headers(), trusted)
}

/// What the response says about the request, on its span: the status
/// (a 5xx fails it), the app and the route that served it.
fn end_trace_span(
    span: &mut trace_context::Span,
    status: hyper::StatusCode,
    who: Option<&RequestIdentity>,
) {
    if status.is_server_error() {
        span.failed();
    }
    if let Some(http) = span.http() {
        http.status_code = Some(status.as_u16());
        if let Some(who) = who {
            http.app = who.app.clone().map(Into::into);
            http.route.clone_from(&who.route);
        }
    }
}

/// The request's id: a trusted proxy's `X-Request-Id` (`trusted`: the peer
/// is one), or a new one. Written into the request, so the upstream sees the
/// id the access log names.
fn request_id(req: &mut hyper::Request<Incoming>, trusted: bool) -> RequestId {
    let from_proxy = trusted
        .then(|| RequestId::from_proxy(req.headers()))
        .flatten();
    let id = from_proxy.unwrap_or_else(RequestId::generate);
    req.headers_mut()
        .insert(request_id::HEADER, id.header_value());
    id
}
