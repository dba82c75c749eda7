//! Signing in: the login start (a pending login, then the IdP) and the
//! callback (the code redeemed, a session made, back to the return URL).

use http::Response;
use http::StatusCode;
use http::header::HeaderMap;
use subtle::ConstantTimeEq as _;

use crate::cookies::{cookie, scoped_cookie, set_cookie};
use crate::error::GatewayError;
use crate::headers::{ClientView, cookie_value};
use crate::lookups::query_param;
use crate::rescue::redirect;
use crate::session::{PendingLogin, Session, SessionId, binding_hash};
use crate::{App, Gateway, Runtime};
use orchestrator_http::body::BoxBody;

/// Stores a pending login and sends the browser to the IdP.
#[tracing::instrument(target = "otel", level = "trace", name = "login.start", skip_all, fields(orchestrator.app = %app.name))]
pub(crate) async fn start_login(
    gw: &Gateway,
    rt: &Runtime,
    app: &App,
    headers: &HeaderMap,
    view: &ClientView,
    return_to: String,
    force_login: bool,
) -> Result<Response<BoxBody>, GatewayError> {
    let idp = rt.idps.get(&app.idp).ok_or(GatewayError::IdpUnavailable {
        idp: app.idp.clone(),
    })?;
    if !gw
        .sessions
        .admit_login(view.client_ip, rt.max_pending_per_client)
    {
        return Err(GatewayError::TooManyLogins);
    }
    let https = view.proto == "https";
    let redirect_uri = format!("{}://{}{}", view.proto, view.host, rt.callback_path);
    let start = idp.start(&redirect_uri, force_login).await?;
    // One binding value per browser, reused while it lives, so logins
    // started in several tabs at once all complete.
    let binding = cookie_value(headers, rt.cookies.binding(https))
        .filter(|v| SessionId::parse(v).is_some())
        .unwrap_or_else(|| SessionId::random().expose());
    let pending = PendingLogin {
        idp: idp.name().to_owned(),
        app: app.name.to_string(),
        return_to,
        pkce_verifier: start.pkce_verifier,
        nonce: start.nonce,
        binding: binding_hash(&binding),
        redirect_uri,
    };
    gw.sessions
        .put_pending(&start.state, pending, rt.pending_ttl)
        .await?;
    gw.metrics
        .logins_started
        .with_label_values(&[&app.idp])
        .inc();
    let mut resp = redirect(StatusCode::FOUND, start.url.as_str())?;
    set_cookie(
        &mut resp,
        &cookie(rt.cookies.binding(https), binding, https, rt.pending_ttl),
    );
    Ok(resp)
}

/// The IdP sent the browser back: redeem the code, create a session.
#[tracing::instrument(target = "otel", level = "trace", name = "login.callback", skip_all)]
pub(crate) async fn callback(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
    query: Option<&str>,
    view: &ClientView,
) -> Result<Response<BoxBody>, GatewayError> {
    let state = query_param(query, "state").ok_or(GatewayError::BadRequest("missing state"))?;
    let logins = &gw.metrics.logins;
    let Some(pending) = gw.sessions.take_pending(&state).await? else {
        // No pending login: which IdP it was for is unknown.
        logins
            .with_label_values(&["unknown", "failure", "expired"])
            .inc();
        return Err(GatewayError::LoginFailed("unknown or expired state".into()));
    };
    // The callback must come from the browser that started the login.
    let https = view.proto == "https";
    let bound = cookie_value(headers, rt.cookies.binding(https))
        .map(|v| binding_hash(&v))
        .is_some_and(|h| bool::from(h.as_bytes().ct_eq(pending.binding.as_bytes())));
    if !bound {
        logins
            .with_label_values(&[&pending.idp, "failure", "wrong_browser"])
            .inc();
        return Err(GatewayError::LoginFailed(
            "login started in another browser".into(),
        ));
    }
    if let Some(err) = query_param(query, "error") {
        logins
            .with_label_values(&[&pending.idp, "denied", "idp_error"])
            .inc();
        return Err(GatewayError::LoginFailed(format!(
            "identity provider answered {err}"
        )));
    }
    let code = query_param(query, "code").ok_or(GatewayError::BadRequest("missing code"))?;
    let Some(idp) = rt.idps.get(&pending.idp) else {
        logins
            .with_label_values(&[&pending.idp, "failure", "idp_gone"])
            .inc();
        return Err(GatewayError::LoginFailed(
            "identity provider no longer configured".into(),
        ));
    };
    // RFC 9207: when the IdP names itself in the response, it must be the one
    // this login was sent to (mix-up defence).
    if let Some(iss) = query_param(query, "iss") {
        if iss != idp.issuer() {
            logins
                .with_label_values(&[&pending.idp, "failure", "issuer_mismatch"])
                .inc();
            return Err(GatewayError::LoginFailed(
                "authorization response from another issuer".into(),
            ));
        }
    }
    let result = match idp
        .finish(
            &code,
            &pending.pkce_verifier,
            &pending.nonce,
            &pending.redirect_uri,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            logins
                .with_label_values(&[&pending.idp, "failure", "exchange_failed"])
                .inc();
            return Err(e.into());
        }
    };
    // A new id at every login, and the old one dropped: an id planted in the
    // browser before login never becomes an authenticated session.
    let session_cookie = rt.cookies.session(https, &view.route_host);
    if let Some(old) = cookie_value(headers, session_cookie.name).and_then(|v| SessionId::parse(&v))
    {
        gw.sessions.remove(&old, "replaced").await?;
    }
    let session = Session::new(
        idp.name_shared(),
        &session_cookie.scope(&view.route_host),
        &result.id_token,
        &result.extra,
    );
    let id = gw
        .sessions
        .create(session, result.refresh_token.as_deref(), &gw.metrics)
        .await?;
    logins
        .with_label_values(&[&pending.idp, "success", "ok"])
        .inc();
    tracing::info!(app = %pending.app, idp = %pending.idp, client = %view.client_ip, "login");
    let mut resp = redirect(StatusCode::SEE_OTHER, &pending.return_to)?;
    set_cookie(
        &mut resp,
        &scoped_cookie(
            session_cookie.name,
            session_cookie.domain,
            id.expose(),
            https,
            rt.session_max_lifetime,
        ),
    );
    Ok(resp)
}
