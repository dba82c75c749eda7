//! The login form's POST: the sealed transaction and CSRF check, throttling
//! (reserved before argon2id runs, see `throttle`), verification, then a new
//! SSO session and the pending authorization's code.

use std::time::Duration;

use http::request::Parts;
use http::{Response, StatusCode, header};
use subtle::ConstantTimeEq as _;

use crate::BoxBody;
use crate::device::{self, DEVICE_COOKIE};
use crate::error::OAuthError;
use crate::respond;

use crate::params::Params;
use crate::seal::{self, LoginTx};
use crate::state::{CSRF_COOKIE, Provider, RequestCtx};
use crate::store::PendingAuthorization;
use crate::throttle;
use crate::tokens::now;
use crate::users::Verified;
use crate::web;
use orchestrator_ui::{LoginView, SignInOption};

const BAD_CREDENTIALS: &str = "Incorrect username or password.";
const THROTTLED: &str = "Too many failed sign-in attempts. Wait a few minutes and try again.";
/// Longest user name or password looked at (argon2 cost is per byte too).
const MAX_CREDENTIAL: usize = 1024;

pub(crate) async fn serve(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
) -> Response<BoxBody> {
    match login(p, parts, params, ctx).await {
        Ok(resp) => resp,
        Err(e) => respond::page_response(&p.pages, &e),
    }
}

async fn login(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    let tx = params.require("tx")?;
    let csrf = params.require("csrf")?;
    let Some(LoginTx {
        pending,
        expires_at,
    }) = seal::open(&p.keys, tx)
    else {
        return Err(expired());
    };
    // The seal proves we wrote it; the client may have gone (or changed its
    // redirect URIs) since, and a code must not go anywhere unregistered.
    if !p
        .clients
        .get(&pending.client_id)
        .is_some_and(|c| c.has_redirect_uri(&pending.redirect_uri))
    {
        return Err(expired());
    }
    // Double submit, bound to the transaction: the form field, the cookie and
    // the stored value must all agree (login CSRF).
    let cookie = web::cookie(&parts.headers, CSRF_COOKIE).unwrap_or_default();
    let form_ok: bool = csrf.as_bytes().ct_eq(pending.csrf.as_bytes()).into();
    let cookie_ok: bool = cookie.as_bytes().ct_eq(pending.csrf.as_bytes()).into();
    if !(form_ok && cookie_ok) {
        return Err(OAuthError::invalid_request(
            "CSRF check failed; reload the sign-in page",
        ));
    }

    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    if username.is_empty()
        || password.is_empty()
        || username.len() > MAX_CREDENTIAL
        || password.len() > MAX_CREDENTIAL
    {
        p.metrics.logins.with_label_values(&["failure"]).inc();
        return Ok(form(
            p,
            tx,
            &pending,
            username,
            StatusCode::UNAUTHORIZED,
            BAD_CREDENTIALS,
        ));
    }

    // Throttling reserves the check before argon2 runs (see `throttle`).
    let throttled = || {
        p.metrics.logins.with_label_values(&["throttled"]).inc();
        form(
            p,
            tx,
            &pending,
            username,
            StatusCode::TOO_MANY_REQUESTS,
            THROTTLED,
        )
    };
    let Some(_slot) = p.verifying.enter(username) else {
        return Ok(throttled());
    };
    let ip = ctx.client_ip.to_string();
    let known_device = web::cookie(&parts.headers, DEVICE_COOKIE)
        .is_some_and(|v| device::recognises(&p.keys, username, &v));
    let Some(attempt) =
        throttle::reserve(&p.store, &p.throttle, username, &ip, known_device).await?
    else {
        return Ok(throttled());
    };

    let user = match p.users.verify(username, password.to_owned()).await {
        Verified::Ok(user) => {
            // Undoing the reservation is bookkeeping: should the cache fail
            // now, the attempt stays counted (as a failure would) rather than
            // a right password being refused.
            if let Err(e) = attempt.succeeded().await {
                tracing::warn!(error = %e, "login throttle reservation not undone");
            }
            user
        }
        Verified::Bad => {
            attempt.failed().await?;
            p.metrics.logins.with_label_values(&["failure"]).inc();
            tracing::info!(client_ip = %ip, "failed sign-in");
            return Ok(form(
                p,
                tx,
                &pending,
                username,
                StatusCode::UNAUTHORIZED,
                BAD_CREDENTIALS,
            ));
        }
    };
    p.metrics.logins.with_label_values(&["success"]).inc();

    // Consume the transaction only now, so a typo does not restart the flow;
    // the atomic claim makes a double submit issue one code, not two.
    let remaining = Duration::from_secs(expires_at.saturating_sub(now()));
    if !p.store.claim_login_tx(tx, remaining).await? {
        return Err(expired());
    }

    let (session, session_cookie) =
        crate::sso::start_session(p, &parts.headers, user.username.clone(), None, ctx).await?;
    tracing::info!(sid = %session.sid, "sign-in");

    let mut resp = match crate::sso::issue_code(p, &pending, &session).await {
        Ok(r) => r,
        Err(e) => respond::redirect_response(
            &p.pages,
            &pending.redirect_uri,
            pending.state.as_deref(),
            &p.issuer,
            &e,
        ),
    };
    crate::sso::add_cookie(&mut resp, session_cookie);
    let h = resp.headers_mut();
    // This browser is now known for this user (see `device`).
    if let Some(v) = device::issue(p.active_key(), &user.username).and_then(|value| {
        web::set_cookie(
            DEVICE_COOKIE,
            Some(&value),
            p.cookie_path(),
            ctx.tls,
            Some(device::LIFETIME),
        )
    }) {
        h.append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

fn expired() -> OAuthError {
    OAuthError::invalid_request(
        "this sign-in request has expired; go back to the application and start again",
    )
}

/// The form again, with a message.
fn form(
    p: &Provider,
    tx: &str,
    pending: &PendingAuthorization,
    username: &str,
    status: StatusCode,
    message: &str,
) -> Response<BoxBody> {
    let action = p.local_path("/login");
    let client_name = p
        .clients
        .get(&pending.client_id)
        .map_or_else(|| pending.client_id.clone(), |c| c.name.clone());
    let options = crate::federation::sign_in_options(p, tx);
    let providers: Vec<SignInOption<'_>> = options
        .iter()
        .map(|(label, url)| SignInOption { label, url })
        .collect();
    let page = p.pages.render(&LoginView {
        title: "Sign in",
        action: &action,
        transaction: tx,
        csrf: &pending.csrf,
        username,
        client_name: &client_name,
        message: Some(message),
        providers: &providers,
        password_form: true,
    });
    web::login_html(status, page, &pending.redirect_uri)
}
