//! A session never outlives its identity (OpenID Connect Core §12): when
//! the ID token it was made from expires, the session is renewed with the
//! login's refresh token, which brings fresh claims (groups, a removed user)
//! from the IdP. Within `session.identityGrace` after the expiry the renewal
//! runs beside the request, which is served as before; past it the request
//! waits for the renewal. A refusal (the grant is gone) ends the session at
//! once; a session that cannot be renewed ends when the grace is over.
//!
//! A refresh token works once, so one renewal per session runs at a time:
//! callers in this process wait for the same one, and with the shared store
//! a claim in the cache keeps other replicas out (they take its result).
//! A renewal runs as a task of its own: a request that gives up (a client
//! that disconnects) cannot abandon it between spending the refresh token
//! and storing the new one. Only an IdP's `invalid_grant` ends a session
//! early; past the grace, an identity that cannot be confirmed (IdP or
//! store down) is not served, tunnels included.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_rp::{Idp, RpError};
use tracing::Instrument as _;

use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;
use crate::session::{Session, SessionId, SessionStore, now_secs};

/// How long after a failed renewal (IdP unreachable) the next one is tried.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a renewal's result is shared with the requests that read the
/// session before it was replaced.
const RESULT_TTL: Duration = Duration::from_secs(30);
/// How often, and how many times, a request past the grace looks for the
/// renewal another replica holds.
const WAIT_STEP: Duration = Duration::from_millis(250);
const WAIT_STEPS: u32 = 240;
/// Longest a renewal may take (discovery, token and userinfo calls):
/// shorter than the claim it holds ([`crate::session::RENEWAL_LOCK_TTL`]).
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a renewal brought no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// The IdP refused: the session is over (and removed).
    Ended,
    /// The IdP (or the store) could not be asked; the session stays.
    Unavailable,
}

/// Renewals in flight and recent failures; built once, kept across reloads.
pub(crate) struct Renewals {
    /// Keyed by session and renewal count: concurrent callers share one.
    results: moka::future::Cache<([u8; 32], u32), Arc<Session>>,
    /// Sessions whose last renewal could not reach the IdP.
    failed: moka::sync::Cache<[u8; 32], ()>,
    /// Sessions with a background renewal running (one task each).
    running: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    metrics: Arc<GatewayMetrics>,
}

impl std::fmt::Debug for Renewals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewals").finish_non_exhaustive()
    }
}

impl Renewals {
    pub(crate) fn new(metrics: Arc<GatewayMetrics>) -> Self {
        Self {
            results: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RESULT_TTL)
                .build(),
            failed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RETRY_AFTER)
                .build(),
            running: std::sync::Mutex::default(),
            metrics,
        }
    }
}

/// Session `id` as it may be served now: as it is while its identity
/// holds, renewed when it has expired, `None` when it is over (removed if
/// the IdP refused or nothing can renew it past the grace).
pub(crate) async fn current(
    sessions: &Arc<SessionStore>,
    renewals: &Arc<Renewals>,
    idp: Option<&Arc<Idp>>,
    id: SessionId,
    session: Arc<Session>,
) -> Result<Option<Arc<Session>>, GatewayError> {
    let now = now_secs();
    if session.valid_until == 0 || now < session.valid_until {
        return Ok(Some(session));
    }
    let grace = sessions.identity_grace.as_secs();
    let past_grace = now >= session.valid_until.saturating_add(grace);
    let Some(idp) = idp.filter(|_| session.renewable()) else {
        if past_grace {
            renewals.metrics.renewal("expired");
            Box::pin(sessions.remove(&id, "identity_expired")).await?;
            return Ok(None);
        }
        return Ok(Some(session));
    };
    let recently_failed = renewals.failed.contains_key(&id.bytes());
    if !past_grace {
        if !recently_failed && renewals.start(id) {
            let (sessions, renewals, idp) = (sessions.clone(), renewals.clone(), idp.clone());
            let current = session.clone();
            tokio::spawn(
                async move {
                    let _ = renew(&sessions, &renewals, &idp, id, current).await;
                    renewals.finished(id);
                }
                .in_current_span(),
            );
        }
        return Ok(Some(session));
    }
    if recently_failed {
        return Ok(None);
    }
    // Boxed, as the other rare paths below: inline, the refresh's HTTP
    // future would enlarge (and be copied with) every request's future.
    match Box::pin(renew(sessions, renewals, idp, id, session)).await {
        Ok(renewed) => Ok(Some(renewed)),
        Err(Failed::Ended) => Ok(None),
        // Past the grace an unconfirmed identity is not served; the session
        // stays, for a renewal once the IdP is back.
        Err(Failed::Unavailable) => Ok(None),
    }
}

/// One renewal of `session` (shared by every caller that read this version).
async fn renew(
    sessions: &Arc<SessionStore>,
    renewals: &Arc<Renewals>,
    idp: &Arc<Idp>,
    id: SessionId,
    session: Arc<Session>,
) -> Result<Arc<Session>, Failed> {
    let key = (id.bytes(), session.renewals);
    let task = {
        let (sessions, renewals, idp) = (sessions.clone(), renewals.clone(), idp.clone());
        async move {
            let outcome = match tokio::time::timeout(
                RENEWAL_TIMEOUT,
                refresh_once(sessions.clone(), idp.clone(), id, session),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(idp = %idp.name(), "session renewal timed out");
                    Err(Failed::Unavailable)
                }
            };
            let label = match &outcome {
                Ok(_) => "renewed",
                Err(Failed::Ended) => "refused",
                Err(Failed::Unavailable) => {
                    renewals.failed.insert(id.bytes(), ());
                    "unavailable"
                }
            };
            renewals.metrics.renewal(label);
            outcome
        }
    };
    // Its own task: dropping the caller does not drop the renewal.
    let init = async move { tokio::spawn(task).await.unwrap_or(Err(Failed::Unavailable)) };
    renewals
        .results
        .try_get_with(key, init)
        .await
        .map_err(|e| *e)
}

/// Owns what it uses: it runs as a task of its own.
async fn refresh_once(
    sessions: Arc<SessionStore>,
    idp: Arc<Idp>,
    id: SessionId,
    session: Arc<Session>,
) -> Result<Arc<Session>, Failed> {
    let unavailable = |e: GatewayError| {
        tracing::warn!(error = %e, "session renewal: store unavailable");
        Failed::Unavailable
    };
    let renewals = session.renewals;
    drop(session);
    if !sessions.lock_renewal(&id).await.map_err(unavailable)? {
        return wait_for_other(&sessions, id, renewals).await;
    }
    let result = {
        let (sessions, idp) = (sessions.clone(), idp.clone());
        async move {
        // Another replica may have renewed it just before the claim: its
        // refresh token is the one to spend (the old one is spent).
        let current = match sessions.reread(&id).await.map_err(unavailable)? {
            None => return Err(Failed::Ended),
            Some(s) if s.renewals != renewals => return Ok(s),
            Some(s) => s,
        };
        let Some(token) = current.refresh_token(&id) else {
            // Sealed for another id, or damaged: it can never be renewed.
            sessions.remove(&id, "renewal_refused").await.map_err(unavailable)?;
            return Err(Failed::Ended);
        };
        let id_token = current.id_token();
        match idp.refresh(&token, &id_token).await {
            Ok(refreshed) => {
                let next = current.renewed(&id, &refreshed);
                match sessions.replace(&id, next).await {
                    Ok(Some(stored)) => Ok(stored),
                    // Signed out meanwhile: it stays out.
                    Ok(None) => Err(Failed::Ended),
                    Err(e) => {
                        // The old refresh token is spent: a session that
                        // kept it would fail its next renewal as a replay.
                        tracing::warn!(error = %e, "renewed session not stored; it ends");
                        let _ = sessions.remove(&id, "renewal_refused").await;
                        Err(Failed::Ended)
                    }
                }
            }
            Err(RpError::Refused(why)) => {
                tracing::info!(idp = %idp.name(), reason = %why, "session ended: renewal refused");
                sessions.remove(&id, "renewal_refused").await.map_err(unavailable)?;
                Err(Failed::Ended)
            }
            Err(e) => {
                tracing::warn!(idp = %idp.name(), error = %e, "session renewal failed; retried later");
                Err(Failed::Unavailable)
            }
        }
    }
    }
    .await;
    if let Err(e) = sessions.unlock_renewal(&id).await {
        tracing::warn!(error = %e, "session renewal: claim not released (it expires)");
    }
    result
}

impl Renewals {
    /// Marks a background renewal of `id` as running; `false` when one is.
    fn start(&self, id: SessionId) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.bytes())
    }

    fn finished(&self, id: SessionId) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.bytes());
    }
}

/// Another replica holds the renewal: its result, once it is stored.
async fn wait_for_other(
    sessions: &SessionStore,
    id: SessionId,
    renewals: u32,
) -> Result<Arc<Session>, Failed> {
    for _ in 0..WAIT_STEPS {
        tokio::time::sleep(WAIT_STEP).await;
        match sessions.reread(&id).await {
            Ok(None) => return Err(Failed::Ended),
            Ok(Some(s)) if s.renewals != renewals => return Ok(s),
            Ok(Some(_)) => {}
            Err(_) => return Err(Failed::Unavailable),
        }
    }
    Err(Failed::Unavailable)
}
