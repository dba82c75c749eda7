//! Starting a login at an upstream IdP, shared by the endpoints that do
//! (`authorize` when an upstream is chosen without the sign-in page, the
//! page's buttons, the callback's helpers): the sealed cookie that carries
//! the pending authorization, the redirect URI, and the outcome counts.
//!
//! Nothing is stored before the user comes back: the pending authorization,
//! the PKCE verifier and the nonce travel sealed (AES-256-GCM with the
//! signing keys' derived keys, [`crate::seal`]) in an HttpOnly cookie scoped
//! to the upstream's callback path and named after a random handle, and the
//! handle is the upstream `state` (43 characters: IdPs limit `state`, ours to
//! 512 bytes). Any replica opens the cookie; only the browser that started
//! the login has it; several tabs each have their own.

use http::Response;
use http::header;
use orchestrator_rp::RpError;
use serde::{Deserialize, Serialize};

use crate::BoxBody;
use crate::error::{ErrorCode, OAuthError};
use crate::respond;
use crate::seal::{self, Kind};
use crate::state::{CSRF_COOKIE, LOGIN_TTL, Provider, RequestCtx};
use crate::store::{PendingAuthorization, random_token};
use crate::tokens;
use crate::upstreams::Upstream;
use crate::web;

/// What the upstream `state` holds, sealed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UpstreamState {
    /// The upstream's name.
    pub(crate) u: String,
    /// The authorization request to resume.
    pub(crate) p: PendingAuthorization,
    /// PKCE verifier.
    pub(crate) v: String,
    /// Nonce expected in the upstream's ID token.
    pub(crate) n: String,
    /// The handle: the upstream `state`, claimed once at the callback.
    pub(crate) k: String,
}

/// The redirect URI to register at upstream `name`.
pub(crate) fn callback_uri(p: &Provider, name: &str) -> String {
    format!("{}/upstreams/{name}/callback", p.issuer)
}

/// The sign-in page's buttons for transaction `tx`: label and start URL
/// of every upstream, in config order.
pub(crate) fn sign_in_options(p: &Provider, tx: &str) -> Vec<(String, String)> {
    p.upstreams
        .iter()
        .map(|u| (u.label.clone(), start_url(p, u, tx)))
        .collect()
}

/// The sign-in page shows the password form: there are local users (or
/// nothing else to offer).
pub(crate) fn password_form(p: &Provider) -> bool {
    !p.users.is_empty() || p.upstreams.is_empty()
}

/// The sign-in page's button for `upstream`: its start URL for the sealed
/// transaction `tx`.
pub(crate) fn start_url(p: &Provider, upstream: &Upstream, tx: &str) -> String {
    let tx: String = form_urlencoded::byte_serialize(tx.as_bytes()).collect();
    let path = p.local_path(&format!("/upstreams/{}/start", upstream.name));
    format!("{path}?tx={tx}")
}

/// Sends the browser to `upstream` for `pending` (whose `csrf` is the
/// browser's CSRF cookie, set on the response).
pub(crate) async fn begin(
    p: &Provider,
    upstream: &Upstream,
    pending: PendingAuthorization,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    // `prompt=login` and `max_age` mean a fresh authentication: the upstream
    // must not sign the user in from its own session either.
    let force_login = pending.fresh_login;
    let verifier = random_token();
    let nonce = random_token();
    let handle = random_token();
    let csrf = pending.csrf.clone();
    let state = UpstreamState {
        u: upstream.name.clone(),
        p: pending,
        v: verifier.clone(),
        n: nonce.clone(),
        k: handle.clone(),
    };
    let sealed = seal::seal_value(
        p.active_key(),
        Kind::UpstreamState,
        &state,
        tokens::expiry(LOGIN_TTL),
    )?;
    // A browser drops a cookie over 4 KiB without a word (the user would
    // come back to "expired"); say so now instead.
    if sealed.len() > MAX_STATE_COOKIE {
        return Err(OAuthError::invalid_request(
            "the authorization request is too large to sign in through an identity provider",
        ));
    }
    let url = upstream
        .idp
        .start_with(
            &callback_uri(p, &upstream.name),
            force_login,
            handle.clone(),
            nonce,
            &verifier,
        )
        .await
        .map_err(|e| upstream_error(p, upstream, "start", &e))?;
    p.metrics
        .upstream_logins
        .with_label_values(&[&upstream.name, "started"])
        .inc();
    let mut resp = respond::redirect(&p.pages, url.as_str());
    let h = resp.headers_mut();
    if let Some(v) = web::set_cookie(CSRF_COOKIE, Some(&csrf), p.cookie_path(), ctx.tls, None) {
        h.append(header::SET_COOKIE, v);
    }
    if let Some(v) = web::set_cookie(
        &state_cookie(&handle),
        Some(&sealed),
        &state_cookie_path(p, &upstream.name),
        ctx.tls,
        Some(LOGIN_TTL),
    ) {
        h.append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Largest sealed login cookie value (browsers keep cookies up to 4096
/// bytes, name and attributes included).
const MAX_STATE_COOKIE: usize = 3800;

/// The name of the cookie of the upstream login whose `state` is `handle`.
pub(crate) fn state_cookie(handle: &str) -> String {
    let short: String = handle.chars().take(16).collect();
    format!("oidc_upstream_{short}")
}

/// The path that cookie is sent to: the upstream's callback.
pub(crate) fn state_cookie_path(p: &Provider, name: &str) -> String {
    p.local_path(&format!("/upstreams/{name}/"))
}

pub(crate) fn count(p: &Provider, upstream: &str, outcome: &str) {
    p.metrics
        .upstream_logins
        .with_label_values(&[upstream, outcome])
        .inc();
}

/// What the client hears when the upstream fails: unavailable (retry) or
/// refused; the details go to the log only.
pub(crate) fn upstream_error(
    p: &Provider,
    upstream: &Upstream,
    step: &str,
    e: &RpError,
) -> OAuthError {
    tracing::info!(upstream = %upstream.name, step, error = %e, "upstream sign-in failed");
    match e {
        RpError::IdpUnavailable { .. } => {
            count(p, &upstream.name, "unavailable");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the identity provider cannot be reached; try again later",
            )
        }
        _ => {
            count(p, &upstream.name, "failure");
            OAuthError::new(
                ErrorCode::AccessDenied,
                "the sign-in at the identity provider failed",
            )
        }
    }
}

/// The post-logout redirect URI to register at upstream `name`.
pub(crate) fn logged_out_uri(p: &Provider, name: &str) -> String {
    format!("{}/upstreams/{name}/logged-out", p.issuer)
}

/// Where a user goes after logging out of `link`'s upstream too: its
/// end-session endpoint with the upstream ID token as hint, coming back to
/// `logged_out_uri` with `destination` (the client's post-logout redirect,
/// if any) sealed in the `state`. `None` when the upstream has no
/// end-session endpoint (or is gone from the config).
pub(crate) async fn upstream_logout(
    p: &Provider,
    link: &crate::store::UpstreamLink,
    destination: Option<&str>,
) -> Option<String> {
    let upstream = p.upstreams.get(&link.name)?;
    let state = seal::seal_value(
        p.active_key(),
        Kind::UpstreamLogout,
        &destination.map(str::to_owned),
        tokens::expiry(LOGIN_TTL),
    )
    .ok()?;
    let url = upstream
        .idp
        .logout_url_with_state(
            &link.id_token,
            &logged_out_uri(p, &upstream.name),
            Some(state),
        )
        .await?;
    Some(url.to_string())
}
