//! Login throttling: every password check is reserved before argon2 runs, so
//! attempts in flight count as much as finished ones and a burst of parallel
//! guesses gets no more verifications than a patient attacker.
//!
//! In the order a login attempt meets them:
//! 1. **in flight** — at most `maxConcurrentPerUser` verifications of one user
//!    name run at once in this process; more are refused before touching the
//!    cache (argon2 is the expensive part, and the burst never reaches it);
//! 2. **client IP** — a hard limit of `maxFailuresPerIp` per window: it only
//!    shuts out the address that is guessing, and it is checked before the
//!    per-user counters so one address cannot create counters for endless
//!    made-up user names;
//! 3. **user from this IP** — the first `freeFailuresPerClient` failures of a
//!    (user, IP) pair cost nothing; after that each attempt must win a gate
//!    whose lifetime (`delay`, doubling per failure, at most `maxDelay`)
//!    starts at the last failure;
//! 4. **user from anywhere** — beyond `maxFailuresPerUser` failures per window
//!    the same kind of gate applies to the user name across all addresses, so
//!    a distributed guesser gets one try per delay, while the real user is
//!    slowed down (at most `maxDelay`) but never locked out for the window.
//!
//! Each step is an atomic `incr` (or `set_if_absent` for a gate) in the
//! shared cache, so replicas on Redis share the budget. A reservation that is
//! refused, or whose password turns out right, is undone with `decr`: the
//! counters count failures and attempts in flight, nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_config::LoginThrottleConfig;

use crate::store::{Store, StoreError, ThrottleSubject};

/// Verifications running per user name in this process.
#[derive(Debug)]
pub(crate) struct InFlight {
    max: u32,
    by_user: Mutex<HashMap<String, u32>>,
}

/// One running verification; dropping it frees the slot.
pub(crate) struct Slot {
    set: Arc<InFlight>,
    user: String,
}

impl InFlight {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            by_user: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for verifying `user`, or `None` when `max` already run.
    pub(crate) fn enter(self: &Arc<Self>, user: &str) -> Option<Slot> {
        // The map only holds names being verified right now, so it stays as
        // small as the number of requests in flight. A poisoned lock only
        // means a panic elsewhere while counting: the counts are still sound.
        let mut map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user.to_owned()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            set: Arc::clone(self),
            user: user.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.set.by_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// A reserved password check: its counters are already incremented.
pub(crate) struct Attempt<'a> {
    store: &'a Store,
    cfg: &'a LoginThrottleConfig,
    user: &'a str,
    pair: String,
    ip: &'a str,
    /// The (user, IP) and user counts including this attempt.
    pair_n: u64,
    user_n: u64,
    /// The browser signed in as this user before (see `device`): exempt
    /// from the per-user delay that other addresses' failures cause.
    known_device: bool,
}

/// Reserves one password check of `user` from `ip` (from a browser that
/// signed in as `user` before when `known_device`); `None` means refuse it
/// (the throttled page) without verifying anything.
pub(crate) async fn reserve<'a>(
    store: &'a Store,
    cfg: &'a LoginThrottleConfig,
    user: &'a str,
    ip: &'a str,
    known_device: bool,
) -> Result<Option<Attempt<'a>>, StoreError> {
    use ThrottleSubject::{ClientIp, Pair, Username};
    let ip_n = store.count(ClientIp, ip, cfg.window).await?;
    if ip_n > u64::from(cfg.max_failures_per_ip) {
        store.uncount(ClientIp, ip).await?;
        return Ok(None);
    }
    let pair = pair_key(user, ip);
    let pair_n = match store.count(Pair, &pair, cfg.window).await {
        Ok(n) => n,
        Err(e) => {
            // Give back what this attempt took, so a cache blip does not
            // leave reservations that no one will ever undo.
            let _ = store.uncount(ClientIp, ip).await;
            return Err(e);
        }
    };
    let user_n = match store.count(Username, user, cfg.window).await {
        Ok(n) => n,
        Err(e) => {
            let _ = store.uncount(Pair, &pair).await;
            let _ = store.uncount(ClientIp, ip).await;
            return Err(e);
        }
    };
    let attempt = Attempt {
        store,
        cfg,
        user,
        pair,
        ip,
        pair_n,
        user_n,
        known_device,
    };
    match attempt.pass_gates().await {
        Ok(true) => Ok(Some(attempt)),
        Ok(false) => {
            attempt.undo().await?;
            Ok(None)
        }
        Err(e) => {
            let _ = attempt.undo().await;
            Err(e)
        }
    }
}

impl Attempt<'_> {
    /// Past its free budget an attempt must take the gate, which is only
    /// free once the delay since the last failure has run out. Of attempts
    /// racing for it, exactly one wins.
    async fn pass_gates(&self) -> Result<bool, StoreError> {
        use ThrottleSubject::{Pair, Username};
        let free_pair = u64::from(self.cfg.free_failures_per_client);
        let free_user = u64::from(self.cfg.max_failures_per_user);
        let allowed = (self.pair_n <= free_pair
            || self
                .store
                .take_gate(Pair, &self.pair, self.delay(self.pair_n - free_pair))
                .await?)
            && (self.user_n <= free_user
                || self.known_device
                || self
                    .store
                    .take_gate(Username, self.user, self.delay(self.user_n - free_user))
                    .await?);
        if !allowed {
            return Ok(false);
        }
        // The last free attempt closes the gate already while it runs: an
        // attempt racing it must not find the gate open just because this one
        // has not failed yet. `failed` closes it again from the moment it fails.
        if self.pair_n == free_pair {
            self.store
                .close_gate(Pair, &self.pair, self.delay(1))
                .await?;
        }
        if self.user_n == free_user {
            self.store
                .close_gate(Username, self.user, self.delay(1))
                .await?;
        }
        Ok(true)
    }

    /// `delay · 2^(over − 1)`, at most `maxDelay`.
    fn delay(&self, over: u64) -> Duration {
        let doublings = u32::try_from(over.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.cfg
            .delay
            .saturating_mul(1 << doublings)
            .min(self.cfg.max_delay)
    }

    /// The password was right: this attempt was no failure.
    pub(crate) async fn succeeded(self) -> Result<(), StoreError> {
        self.undo().await
    }

    /// The password was wrong: the failure stays counted, and once a budget
    /// is used up the next attempt waits (from now, not from when this one
    /// started).
    pub(crate) async fn failed(self) -> Result<(), StoreError> {
        use ThrottleSubject::{Pair, Username};
        let free_pair = u64::from(self.cfg.free_failures_per_client);
        let free_user = u64::from(self.cfg.max_failures_per_user);
        if self.pair_n >= free_pair {
            let wait = self.delay(self.pair_n + 1 - free_pair);
            self.store.close_gate(Pair, &self.pair, wait).await?;
        }
        if self.user_n >= free_user {
            let wait = self.delay(self.user_n + 1 - free_user);
            self.store.close_gate(Username, self.user, wait).await?;
        }
        Ok(())
    }

    async fn undo(&self) -> Result<(), StoreError> {
        use ThrottleSubject::{ClientIp, Pair, Username};
        self.store.uncount(Username, self.user).await?;
        self.store.uncount(Pair, &self.pair).await?;
        self.store.uncount(ClientIp, self.ip).await?;
        Ok(())
    }
}

/// One value for a (user, IP) pair; the store hashes it.
fn pair_key(user: &str, ip: &str) -> String {
    // A newline appears in neither a user name we verify nor an IP address.
    format!("{user}\n{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_slots_are_bounded_per_user_and_freed_on_drop() {
        let set = InFlight::new(2);
        let a = set.enter("alice").expect("first");
        let b = set.enter("alice").expect("second");
        assert!(set.enter("alice").is_none(), "third at once");
        let _other = set.enter("bob").expect("other users are separate");
        drop(a);
        let _c = set.enter("alice").expect("a freed slot");
        drop(b);
        assert_eq!(set.by_user.lock().unwrap().get("alice"), Some(&1));
    }
}
