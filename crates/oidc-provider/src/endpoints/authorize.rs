//! The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2).
//!
//! 1. client and redirect URI — until both check out, errors go to an error
//!    page: redirecting to an unchecked URI would make us an open redirector;
//! 2. the rest of the request — errors now go back to the client's redirect
//!    URI with `state` (RFC 6749 §4.1.2.1);
//! 3. the SSO session — reused unless `prompt=login` or `max_age` says
//!    otherwise; `prompt=none` without one is `login_required`;
//! 4. a code (or the login page, which issues the code once the user is in).

use std::sync::Arc;

use http::Response;
use http::header;
use http::request::Parts;

use crate::BoxBody;
use crate::clients::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::federation;
use crate::respond;

use crate::params::Params;
use crate::seal;
use crate::sso::issue_code;
use crate::state::{CSRF_COOKIE, LOGIN_TTL, Provider, RequestCtx, SESSION_COOKIE};
use crate::store::{PendingAuthorization, SsoSession, random_token};
use crate::tokens::{self, now};
use crate::web;
use orchestrator_ui::{LoginView, SignInOption};

/// A checked authorization request.
struct AuthRequest {
    pending: PendingAuthorization,
    prompt_none: bool,
    prompt_login: bool,
    max_age: Option<u64>,
    /// `idp=<upstream>`: sign in there, without the sign-in page.
    idp: Option<String>,
}

pub(crate) async fn serve(
    p: &Provider,
    parts: &Parts,
    params: &Params,
    ctx: RequestCtx,
) -> Response<BoxBody> {
    // Phase 1: who is asking and where the answer goes. Over-long values
    // that would be sealed or echoed are refused here, on a page: an
    // over-long `state` must not travel back in a redirect.
    if let Err(e) = params.check_echoed(&["state", "nonce", "login_hint"]) {
        return respond::page_response(&p.pages, &e);
    }
    let client = match check_client(p, params) {
        Ok(c) => c,
        Err(e) => return respond::page_response(&p.pages, &e),
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default();
    let state = params.get("state");

    // Phase 2: the rest of the request; errors go back to the client.
    let req = match check_request(&client, params) {
        Ok(r) => r,
        Err(e) => return respond::redirect_response(&p.pages, redirect_uri, state, &p.issuer, &e),
    };
    match decide(p, parts, req, &client, ctx).await {
        Ok(resp) => resp,
        Err(e) => respond::redirect_response(&p.pages, redirect_uri, state, &p.issuer, &e),
    }
}

fn check_client(p: &Provider, params: &Params) -> Result<Arc<Client>, OAuthError> {
    let client_id = params.require("client_id")?;
    let client = p
        .clients
        .get(client_id)
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "unknown client"))?;
    let redirect_uri = params.require("redirect_uri")?;
    if !client.has_redirect_uri(redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    Ok(client)
}

fn check_request(client: &Client, params: &Params) -> Result<AuthRequest, OAuthError> {
    if params.has("request") {
        return Err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.has("request_uri") {
        return Err(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    if params.has("registration") {
        return Err(OAuthError::new(
            ErrorCode::RegistrationNotSupported,
            "registration is not supported",
        ));
    }
    match params.require("response_type")? {
        "code" => {}
        _ => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant(orchestrator_config::GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use the authorization code flow",
        ));
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(OAuthError::invalid_request(
            "only response_mode=query is supported",
        ));
    }

    let scope = params
        .get("scope")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidScope, "scope missing"))?;
    let mut scopes: Vec<&str> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !client.allows_scope(s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope not allowed for this client",
            ));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope missing"));
    }

    // PKCE (RFC 7636, RFC 9700 §2.1.1): S256 only; a challenge without a
    // method means "plain", which we refuse.
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (None, None) if client.pkce_required() => {
            return Err(OAuthError::invalid_request(
                "code_challenge required (PKCE S256)",
            ));
        }
        (None, None) => None,
        (Some(c), Some("S256")) => {
            if !tokens::valid_challenge(c) {
                return Err(OAuthError::invalid_request("code_challenge malformed"));
            }
            Some(c.to_owned())
        }
        (Some(_), _) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
        (None, Some(_)) => return Err(OAuthError::invalid_request("code_challenge missing")),
    };

    let mut prompt_none = false;
    let mut prompt_login = false;
    if let Some(prompt) = params.get("prompt") {
        for value in prompt.split(' ').filter(|s| !s.is_empty()) {
            match value {
                "none" => prompt_none = true,
                "login" => prompt_login = true,
                // No consent screen (first-party provider) and one account per session.
                "consent" | "select_account" => {}
                _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
            }
        }
        if prompt_none && prompt != "none" {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined",
            ));
        }
    }
    let max_age =
        match params.get("max_age") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                OAuthError::invalid_request("max_age must be a non-negative integer")
            })?),
        };

    Ok(AuthRequest {
        pending: PendingAuthorization {
            fresh_login: prompt_login || max_age.is_some(),
            client_id: client.id.clone(),
            redirect_uri: params.get("redirect_uri").unwrap_or_default().to_owned(),
            scope: scopes.join(" "),
            state: params.get("state").map(str::to_owned),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge,
            login_hint: params.get("login_hint").map(str::to_owned),
            csrf: String::new(),
        },
        prompt_none,
        prompt_login,
        max_age,
        idp: params.get("idp").map(str::to_owned),
    })
}

async fn decide(
    p: &Provider,
    parts: &Parts,
    req: AuthRequest,
    client: &Client,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    let session = match web::cookie(&parts.headers, SESSION_COOKIE) {
        Some(cookie) => current_session(p, &cookie).await?,
        None => None,
    };
    // max_age=0 means "authenticate now" (the elapsed time is never zero,
    // whatever our one-second resolution says).
    let fresh_enough = |s: &SsoSession| match req.max_age {
        Some(0) => false,
        Some(max_age) => now().saturating_sub(s.auth_time) <= max_age,
        None => true,
    };
    match session {
        Some(s) if !req.prompt_login && fresh_enough(&s) => issue_code(p, &req.pending, &s).await,
        _ if req.prompt_none => Err(OAuthError::new(
            ErrorCode::LoginRequired,
            "user must log in",
        )),
        _ => sign_in(p, parts, req, client, ctx).await,
    }
}

/// The SSO session behind a cookie, if it is live and its user still exists.
pub(crate) async fn current_session(
    p: &Provider,
    cookie: &str,
) -> Result<Option<SsoSession>, OAuthError> {
    let Some(s) = p.store.session(cookie).await? else {
        return Ok(None);
    };
    if s.expires_at <= now()
        || p.user(&s.username).await?.is_none()
        || crate::sso::revoked(p, &s.username, s.auth_time).await?
    {
        return Ok(None);
    }
    Ok(Some(s))
}

/// The user must sign in: straight at an upstream when one is chosen
/// (`idp=`, the `login_hint`'s email domain, or the only upstream when
/// there are no local users), else the sign-in page (the local form and
/// one button per upstream). Nothing is stored until the user has proven
/// who they are: the request is sealed into the form or the upstream state.
async fn sign_in(
    p: &Provider,
    parts: &Parts,
    req: AuthRequest,
    client: &Client,
    ctx: RequestCtx,
) -> Result<Response<BoxBody>, OAuthError> {
    let mut pending = req.pending;
    // Reuse the browser's CSRF cookie when it has one, so logins started in
    // two tabs do not invalidate each other.
    let csrf = web::cookie(&parts.headers, CSRF_COOKIE)
        .filter(|c| c.len() == 43)
        .unwrap_or_else(random_token);
    pending.csrf = csrf.clone();
    let chosen = match req.idp.as_deref() {
        Some(name) => Some(p.upstreams.get(name).ok_or_else(|| {
            OAuthError::invalid_request("idp names no configured identity provider")
        })?),
        None => pending
            .login_hint
            .as_deref()
            .and_then(|hint| p.upstreams.for_login_hint(hint))
            .or_else(|| p.users.is_empty().then(|| p.upstreams.only()).flatten()),
    };
    if let Some(upstream) = chosen {
        let upstream = upstream.clone();
        return federation::begin(p, &upstream, pending, ctx).await;
    }
    let tx = seal::seal(p.active_key(), &pending, tokens::expiry(LOGIN_TTL))?;
    let login_path = p.local_path("/login");
    let options = federation::sign_in_options(p, &tx);
    let providers: Vec<SignInOption<'_>> = options
        .iter()
        .map(|(label, url)| SignInOption { label, url })
        .collect();
    let page = p.pages.render(&LoginView {
        title: "Sign in",
        action: &login_path,
        transaction: &tx,
        csrf: &csrf,
        username: pending.login_hint.as_deref().unwrap_or(""),
        client_name: &client.name,
        message: None,
        providers: &providers,
        password_form: federation::password_form(p),
    });
    let mut resp = web::login_html(http::StatusCode::OK, page, &pending.redirect_uri);
    if let Some(v) = web::set_cookie(CSRF_COOKIE, Some(&csrf), p.cookie_path(), ctx.tls, None) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}
