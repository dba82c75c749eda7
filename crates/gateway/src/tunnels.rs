//! Upgraded connections (WebSocket) end with their session. A tunnel opened
//! with a session is watched: it is closed when the session ends on this
//! replica (sign-out, back-channel logout, a refused renewal), when a reload
//! makes the route's policy refuse the user, and, for what happens
//! elsewhere (a sign-out on another replica, expiry), at the next of the
//! checks it runs every [`RECHECK`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use tokio::sync::broadcast::error::RecvError;

use crate::identity::IdentityCache;
use crate::renewal::{self, Renewals};
use crate::route::NormalPath;
use crate::session::{Ended, SessionId, SessionStore};
use crate::{Gateway, Runtime};

/// How often an open tunnel checks its session without being told to.
const RECHECK: Duration = Duration::from_secs(1);

/// What one tunnel watches: its session, and the route it was opened on.
pub(crate) struct TunnelWatch {
    sessions: Arc<SessionStore>,
    renewals: Arc<Renewals>,
    identities: Arc<IdentityCache>,
    runtime: Arc<ArcSwap<Runtime>>,
    events: tokio::sync::broadcast::Receiver<Ended>,
    closed: IntCounter,
    id: SessionId,
    host: String,
    path: NormalPath,
    /// The session's IdP, `sid` and `sub`, as last seen: which back-channel
    /// logouts concern it.
    who: Option<Who>,
}

/// A session's IdP, `sid` and `sub`.
struct Who {
    idp: Arc<str>,
    sid: Option<Box<str>>,
    sub: Box<str>,
}

impl TunnelWatch {
    /// Watches session `id` for a tunnel opened on `host` and `path`.
    pub(crate) fn new(gw: &Gateway, id: SessionId, host: &str, path: NormalPath) -> Self {
        Self {
            sessions: gw.sessions.clone(),
            renewals: gw.renewals.clone(),
            identities: gw.identities.clone(),
            runtime: gw.runtime.clone(),
            events: gw.sessions.subscribe(),
            closed: gw.metrics.tunnels_closed.clone(),
            id,
            host: host.to_owned(),
            path,
            who: None,
        }
    }

    /// Resolves when the session has ended or the policy of the app now
    /// serving the route refuses its user.
    pub(crate) async fn ended(mut self) {
        let mut tick = tokio::time::interval(RECHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the session was checked just now.
        tick.tick().await;
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Ok(Ended::Session(id)) if id != self.id.bytes() => continue,
                    Ok(Ended::ByIdp { idp, sid, sub }) if !self.concerned(&idp, sid.as_deref(), sub.as_deref()) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    // The store is gone: only the periodic check is left.
                    Err(RecvError::Closed) => self.events = self.sessions.subscribe(),
                },
                _ = tick.tick() => {}
            }
            if !self.admitted().await {
                self.closed.inc();
                return;
            }
        }
    }

    /// Whether a back-channel logout of `idp` naming `sid` or `sub` may
    /// be about this tunnel's session.
    fn concerned(&self, idp: &str, sid: Option<&str>, sub: Option<&str>) -> bool {
        let Some(who) = &self.who else {
            return true;
        };
        *who.idp == *idp
            && (sid.is_some_and(|s| who.sid.as_deref() == Some(s))
                || sub.is_some_and(|s| *who.sub == *s))
    }

    /// Whether the session is live and its user still admitted. A store
    /// that cannot be asked keeps the tunnel open (a Redis blip must not
    /// cut every WebSocket); past the grace, an identity that cannot be
    /// renewed closes it (see [`crate::renewal`]). An open tunnel counts as
    /// activity: it keeps its session from going idle.
    async fn admitted(&mut self) -> bool {
        let rt = self.runtime.load_full();
        let session = match self.sessions.get(&self.id).await {
            Ok(Some(s)) => s,
            Ok(None) => return false,
            Err(_) => return true,
        };
        let (sid, sub) = session.logout_ids();
        self.who = Some(Who {
            idp: session.idp.clone(),
            sid,
            sub,
        });
        let Some(app) = rt.router.find(&self.host, &self.path) else {
            return false;
        };
        if *session.idp != *app.idp {
            return false;
        }
        let idp = rt.idps.get(&app.idp);
        let session =
            match renewal::current(&self.sessions, &self.renewals, idp, self.id, session).await {
                Ok(Some(s)) => s,
                Ok(None) => return false,
                Err(_) => return true,
            };
        self.identities
            .get(&rt, app, &self.id, &session)
            .is_some_and(|i| i.allowed)
    }
}
