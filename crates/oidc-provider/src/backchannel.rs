//! OpenID Connect Back-Channel Logout 1.0, the sending side: when an SSO
//! session ends (sign-out, expiry, an operator's revocation), every client
//! that got tokens in it and registered a `backchannelLogoutUri` receives a
//! logout token (§2.4) by a form POST: signed with the ID-token keys,
//! `typ: logout+jwt`, `iss`, `aud`, `iat`, `exp` two minutes on, `jti`,
//! `sid` and `sub` (only `sub` for a revocation of every session of a
//! user), the `events` member, no `nonce`.
//!
//! Every delivery is a job in a delayed queue in the cache first, so it
//! survives the replica that queued it (with Redis): each replica's worker
//! claims due jobs ([`Provider::claim_due_jobs`]), each leased to it for
//! 30 s, and runs them off the request (a slow or dead client never holds
//! the user's logout); a retry, or a job whose replica died, is picked up
//! by whichever worker finds it due. Attempts time out and follow no
//! redirect; a client gets three (now, +1 s, +3 s) unless it answers 4xx.
//! Outcomes are counted by client. The end of each session is queued too,
//! due when it expires, so
//! an expiry notifies like a sign-out does.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::OAuthError;
use crate::state::Provider;
use crate::store::{Queue, SessionClient, SessionEnded, SsoSession, random_id};
use crate::tokens;

/// Lifetime of a logout token (§2.4 recommends at most two minutes).
const TOKEN_TTL_SECS: u64 = 120;
/// The pause before each retry; attempts are one more.
const RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// How long a claimed job is someone's: longer than an attempt (5 s).
const LEASE: Duration = Duration::from_secs(30);
/// Jobs one replica claims per round.
pub const JOB_BATCH: usize = 16;
/// How long after their session's end the records of who got tokens in it
/// are kept, so the expiry job still finds them.
const CLIENTS_KEPT_AFTER_END: Duration = Duration::from_secs(600);

/// One unit of back-channel work; its serialised bytes are its identity in
/// the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Job {
    /// A logout token for client `client`, attempt `attempt` (from 0).
    Deliver {
        id: String,
        client: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        attempt: u8,
    },
    /// SSO session `sid` of `user` reaches its end: notify its clients
    /// unless it ended before.
    Expiry { sid: String, user: String },
}

impl Job {
    fn bytes(&self) -> Vec<u8> {
        // A plain struct of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    /// Left out when the user is gone (an empty `sub` is no subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    events: Value,
}

fn now_ms() -> u64 {
    tokens::now().saturating_mul(1000)
}

/// Remembers that `client_id` got tokens in the SSO session `session`,
/// when it has a back-channel logout URI (one record per session and
/// client: no read-modify-write).
pub(crate) async fn remember(
    p: &Provider,
    session: &SsoSession,
    client_id: &str,
) -> Result<(), OAuthError> {
    if p.clients
        .get(client_id)
        .is_none_or(|c| c.backchannel_logout_uri.is_none())
    {
        return Ok(());
    }
    let rec = SessionClient { at: tokens::now() };
    let left = Duration::from_secs(session.expires_at.saturating_sub(tokens::now()));
    p.store
        .put_session_client(
            &session.sid,
            client_id,
            &rec,
            left.saturating_add(CLIENTS_KEPT_AFTER_END),
        )
        .await?;
    schedule_expiry(p, session).await
}

/// Queues the notice of `session`'s expiry (in a queue of its own: sign-ins
/// cannot crowd out deliveries), once a client that takes logout tokens got
/// a code in it; again is harmless (the same job). A full queue only loses
/// this notice, and says so.
async fn schedule_expiry(p: &Provider, session: &SsoSession) -> Result<(), OAuthError> {
    let job = expiry_job(session);
    let due = session.expires_at.saturating_mul(1000);
    if !p
        .store
        .enqueue_job(Queue::Expiry, &job.bytes(), due)
        .await?
    {
        tracing::warn!(sid = %session.sid, "back-channel queue full: the expiry of this session will not be notified");
        count(p, "-", "dropped");
    }
    Ok(())
}

fn expiry_job(session: &SsoSession) -> Job {
    Job::Expiry {
        sid: session.sid.clone(),
        user: session.username.clone(),
    }
}

/// Sends a logout token for `session` to each client that got tokens in
/// it; returns at once (the deliveries run in the background, queued).
pub(crate) async fn notify(p: &Provider, session: &SsoSession) -> Result<(), OAuthError> {
    notify_sid(p, &session.sid, &session.username).await?;
    // Ended now: its expiry has nothing left to say (and if this fails,
    // the expiry finds the session ended and says nothing).
    let _ = p
        .store
        .dequeue_job(Queue::Expiry, &expiry_job(session).bytes())
        .await;
    Ok(())
}

async fn notify_sid(p: &Provider, sid: &str, username: &str) -> Result<(), OAuthError> {
    let mut targets = Vec::new();
    for client in p.clients.with_backchannel_logout() {
        if p.store.session_client(sid, &client.id).await? {
            targets.push(client.id.clone());
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let sub = p.user(username).await?.map(|u| u.sub.clone());
    for client in targets {
        start(p, &client, Some(sid.to_owned()), sub.clone()).await?;
    }
    Ok(())
}

/// Notifies every client that takes logout tokens that all sessions of
/// `username` ended (a logout token with `sub` and no `sid`).
pub(crate) async fn notify_user(p: &Provider, username: &str) -> Result<(), OAuthError> {
    let Some(sub) = p.user(username).await?.map(|u| u.sub.clone()) else {
        return Ok(());
    };
    let clients: Vec<String> = p
        .clients
        .with_backchannel_logout()
        .map(|c| c.id.clone())
        .collect();
    for client in clients {
        start(p, &client, None, Some(sub.clone())).await?;
    }
    Ok(())
}

/// Rings when jobs were queued in this process, so they start at once
/// rather than at the next round.
static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves when this process has queued back-channel jobs since the last
/// call (a worker waits on it beside its timer).
pub async fn jobs_queued() {
    QUEUED.notified().await;
}

/// Queues a delivery, due now, and wakes the worker.
async fn start(
    p: &Provider,
    client: &str,
    sid: Option<String>,
    sub: Option<String>,
) -> Result<(), OAuthError> {
    // The same notice gets the same id: queued again (a retried expiry, a
    // repeated revocation) it is one job, not two.
    let id = {
        use base64::Engine as _;
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(sid.as_deref().unwrap_or_default());
        h.update([0]);
        h.update(sub.as_deref().unwrap_or_default());
        h.update([0]);
        h.update(client);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
    };
    let job = Job::Deliver {
        id,
        client: client.to_owned(),
        sid,
        sub,
        attempt: 0,
    };
    if !p
        .store
        .enqueue_job(Queue::Deliveries, &job.bytes(), now_ms())
        .await?
    {
        tracing::warn!(client_id = %client, "back-channel queue full: logout token not sent");
        count(p, client, "dropped");
        return Ok(());
    }
    QUEUED.notify_one();
    Ok(())
}

fn count(p: &Provider, client: &str, outcome: &str) {
    p.metrics
        .backchannel_logouts
        .with_label_values(&[client, outcome])
        .inc();
}

/// A job claimed from the back-channel queue, to hand to [`Provider::run_job`].
#[derive(Debug)]
pub struct DueJob(Queue, Vec<u8>);

impl Provider {
    /// Claims up to 16 jobs of the back-channel queue that are due (new
    /// deliveries, retries, session expiries, jobs whose replica died),
    /// each leased to this replica for 30 s. Every replica's worker calls
    /// it every second, and when [`jobs_queued`] rings. Nothing is asked
    /// when no client takes logout tokens.
    pub async fn claim_due_jobs(&self) -> Vec<DueJob> {
        // Without such clients nothing is queued: no background traffic.
        if self.clients.with_backchannel_logout().next().is_none() {
            return Vec::new();
        }
        let mut due = Vec::new();
        for queue in [Queue::Deliveries, Queue::Expiry] {
            match self
                .store
                .claim_jobs(queue, now_ms(), LEASE, JOB_BATCH)
                .await
            {
                Ok(c) => due.extend(c.into_iter().map(|bytes| DueJob(queue, bytes))),
                Err(e) => {
                    tracing::debug!(error = %e, "back-channel queue unavailable");
                    break;
                }
            }
        }
        due
    }

    /// Runs a claimed job: it leaves the queue when done, or is queued
    /// again as its retry; a failure of the store leaves it to come back
    /// after its lease.
    pub async fn run_job(&self, job: DueJob) {
        let DueJob(queue, bytes) = job;
        match serde_json::from_slice::<Job>(&bytes) {
            Ok(job) => run(self, queue, bytes, job).await,
            // Perhaps a newer replica's (a rolling upgrade): left for it,
            // back after the lease.
            Err(_) => tracing::debug!("back-channel queue: a job this version cannot read"),
        }
    }
}

async fn run(p: &Provider, queue: Queue, bytes: Vec<u8>, job: Job) {
    let result = match job {
        Job::Expiry { sid, user } => expire(p, &sid, &user).await,
        Job::Deliver {
            id,
            client,
            sid,
            sub,
            attempt,
        } => deliver(p, &client, sid, sub, attempt, &id).await,
    };
    match result {
        Ok(()) => {
            if let Err(e) = p.store.dequeue_job(queue, &bytes).await {
                tracing::warn!(error = %e, "back-channel job done but still queued (it runs again)");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.description, "back-channel job failed; retried after its lease");
        }
    }
}

/// The session's end, reached: a session that ended before (sign-out)
/// was notified then; otherwise it is marked ended and its clients told.
async fn expire(p: &Provider, sid: &str, user: &str) -> Result<(), OAuthError> {
    if p.store.session_ended(sid).await? {
        return Ok(());
    }
    let ttl = p
        .ttls
        .refresh_token_ttl
        .max(p.ttls.authorization_code_ttl)
        .max(p.sso_ttl);
    // Told first, marked after: a failure in between runs this again
    // (the deliveries are the same jobs), never leaves clients untold.
    notify_sid(p, sid, user).await?;
    p.store
        .mark_session_ended(sid, &SessionEnded { at: tokens::now() }, ttl)
        .await?;
    tracing::info!(sid = %sid, "SSO session expired");
    Ok(())
}

/// One attempt; a failure that may pass queues the next attempt.
async fn deliver(
    p: &Provider,
    client_id: &str,
    sid: Option<String>,
    sub: Option<String>,
    attempt: u8,
    id: &str,
) -> Result<(), OAuthError> {
    // A client removed from the config since gets nothing.
    let Some(uri) = p
        .clients
        .get(client_id)
        .and_then(|c| c.backchannel_logout_uri.clone())
    else {
        count(p, client_id, "dropped");
        return Ok(());
    };
    let iat = tokens::now();
    let claims = LogoutClaims {
        iss: &p.issuer,
        aud: client_id,
        iat,
        exp: iat + TOKEN_TTL_SECS,
        jti: random_id(),
        sid: sid.as_deref(),
        sub: sub.as_deref(),
        events: json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
    };
    let token = tokens::sign(p.active_key(), "logout+jwt", &claims)?;
    let sent = p
        .backchannel_http
        .post(uri)
        .form(&[("logout_token", token.as_str())])
        .send()
        .await;
    let outcome = match sent {
        Ok(r) if r.status().is_success() => "delivered",
        // The client said no: no retry.
        Ok(r) if r.status().is_client_error() => "refused",
        _ => match RETRIES.get(usize::from(attempt)) {
            Some(pause) => {
                let next = Job::Deliver {
                    id: id.to_owned(),
                    client: client_id.to_owned(),
                    sid,
                    sub,
                    attempt: attempt.saturating_add(1),
                };
                let due =
                    now_ms().saturating_add(u64::try_from(pause.as_millis()).unwrap_or(u64::MAX));
                if p.store
                    .enqueue_job(Queue::Deliveries, &next.bytes(), due)
                    .await?
                {
                    return Ok(());
                }
                "dropped"
            }
            None => "failed",
        },
    };
    if outcome != "delivered" {
        tracing::warn!(client_id = %client_id, outcome, attempts = attempt + 1, "back-channel logout not delivered");
    }
    count(p, client_id, outcome);
    Ok(())
}
