//! What the gateway's handlers read from a request: query parameters and the
//! session its cookie names.

use std::sync::Arc;

use http::HeaderMap;
use orchestrator_http::trace_context;

use crate::cookies::in_scope;
use crate::error::GatewayError;
use crate::headers::first_cookie_value;
use crate::session::{Session, SessionId};
use crate::{Gateway, Runtime};

pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The session named by the request's session cookie, if it is live and was
/// made on `host` (lower-case, no port; the request's own, or the original
/// request's for forward auth) or for the `cookieDomain` that holds it,
/// whose cookie was sent over `https` or not. The cookie is scoped to that
/// host or domain, so the same id elsewhere was copied there (from a log,
/// an upstream, a proxy) or planted: no session.
///
/// In a span of its own (`session.lookup`) when traces are on.
pub(crate) async fn current_session(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    https: bool,
    host: &str,
) -> Result<Option<(SessionId, Arc<Session>)>, GatewayError> {
    let span = trace_context::Span::child(
        "session.lookup",
        trace_context::SpanKind::Internal,
        trace_context::HttpAttributes::default,
    );
    trace_context::within(span.as_ref(), async {
        // Over plain HTTP the secure cookie counts too: browsers send it only
        // over HTTPS, so it is there when TLS ended before the proxy that
        // describes the request (an NLB in front of ingress-nginx says `http`).
        let secure = rt.cookies.session(true, host).name;
        let plain = rt.cookies.session(https, host).name;
        let id = first_cookie_value(headers, [secure, plain]).and_then(|v| SessionId::parse(&v));
        let Some(id) = id else {
            return Ok(None);
        };
        let Some(session) = gw.sessions.get(&id).await? else {
            return Ok(None);
        };
        if !in_scope(&session.host, host) {
            return Ok(None);
        }
        let idp = rt.idps.get(&*session.idp);
        let session = crate::renewal::current(&gw.sessions, &gw.renewals, idp, id, session).await?;
        Ok(session.map(|s| (id, s)))
    })
    .await
}
