//! OpenID Connect Back-Channel Logout 1.0, the sending side: when an SSO
//! session ends, every client that got tokens in it and registered a
//! `backchannelLogoutUri` receives a logout token (§2.4) by a form POST:
//! signed with the ID-token keys, `typ: logout+jwt`, `iss`, `aud`, `iat`,
//! `exp` two minutes on, `jti`, `sid` and `sub`, the `events` member, no
//! `nonce`. Deliveries run off the request (a slow or dead client never
//! holds the user's logout), time out, follow no redirect, are retried a
//! bounded number of times, and are counted by client and outcome.
//!
//! Not yet durable: a delivery in flight when the replica dies is lost.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::OAuthError;
use crate::state::Provider;
use crate::store::{SessionClient, SsoSession, random_id};
use crate::tokens;

/// Lifetime of a logout token (§2.4 recommends at most two minutes).
const TOKEN_TTL_SECS: u64 = 120;
/// Attempts per delivery, and the pause before each retry.
const RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    sid: &'a str,
    /// Left out when the user is gone (an empty `sub` is no subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    events: Value,
}

/// Remembers that `client_id` got tokens in the SSO session `sid`, when it
/// has a back-channel logout URI (one record per session and client: no
/// read-modify-write).
pub(crate) async fn remember(p: &Provider, sid: &str, client_id: &str) -> Result<(), OAuthError> {
    if p.clients
        .get(client_id)
        .is_none_or(|c| c.backchannel_logout_uri.is_none())
    {
        return Ok(());
    }
    let rec = SessionClient { at: tokens::now() };
    p.store
        .put_session_client(sid, client_id, &rec, p.sso_ttl)
        .await?;
    Ok(())
}

/// Sends a logout token for `session` to each client that got tokens in it
/// and takes them; returns at once (the deliveries run in the background).
pub(crate) async fn notify(p: &Provider, session: &SsoSession) -> Result<(), OAuthError> {
    let mut targets = Vec::new();
    for client in p.clients.with_backchannel_logout() {
        if p.store.session_client(&session.sid, &client.id).await? {
            targets.push(client.clone());
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let sub = p.user(&session.username).await?.map(|u| u.sub.clone());
    for client in targets {
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        let iat = tokens::now();
        let claims = LogoutClaims {
            iss: &p.issuer,
            aud: &client.id,
            iat,
            exp: iat + TOKEN_TTL_SECS,
            jti: random_id(),
            sid: &session.sid,
            sub: sub.as_deref(),
            events: json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
        };
        let token = tokens::sign(p.active_key(), "logout+jwt", &claims)?;
        let http = p.backchannel_http.clone();
        let counter = p.metrics.backchannel_logouts.clone();
        let client_id = client.id.clone();
        tokio::spawn(async move {
            let outcome = deliver(&http, uri, &token).await;
            if outcome != "delivered" {
                tracing::warn!(client_id = %client_id, outcome, "back-channel logout not delivered");
            }
            counter.with_label_values(&[&client_id, outcome]).inc();
        });
    }
    Ok(())
}

/// POSTs `token` to `uri`: "delivered" (2xx), "refused" (4xx: the client
/// said no, so no retry) or "failed" (unreachable or 5xx, after retries).
async fn deliver(http: &reqwest::Client, uri: url::Url, token: &str) -> &'static str {
    let mut pauses = RETRIES.iter();
    loop {
        let sent = http
            .post(uri.clone())
            .form(&[("logout_token", token)])
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return "delivered",
            Ok(r) if r.status().is_client_error() => return "refused",
            _ => {}
        }
        match pauses.next() {
            Some(pause) => tokio::time::sleep(*pause).await,
            None => return "failed",
        }
    }
}
