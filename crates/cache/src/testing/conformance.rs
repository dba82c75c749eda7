//! The properties every [`Cache`] backend must have, one function each.
//!
//! Each function uses its own fresh keys, so they may share a store, and
//! panics with a message naming the broken property. TTL checks use short
//! TTLs and a bounded poll, never a fixed sleep for synchronisation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Cache, CacheExt, Encoding, Versioned};

/// The short TTL of expiry tests.
pub const SHORT_TTL: Duration = Duration::from_millis(200);
/// A TTL no test outlives.
pub const LONG_TTL: Duration = Duration::from_secs(60);
/// Upper bound for an expired entry to disappear.
pub const EXPIRY_BOUND: Duration = Duration::from_secs(5);

/// A key no other call in this process has used.
pub fn unique_key(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("conformance:{name}:{}:{n}", std::process::id())
}

/// Polls until `key` reads as missing; returns how long it took after `since`.
pub async fn wait_until_missing(cache: &dyn Cache, key: &str, since: Instant) -> Duration {
    loop {
        if cache.get(key).await.expect("get while polling").is_none() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < EXPIRY_BOUND,
            "{key} still present {EXPIRY_BOUND:?} after it should have expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Entries disappear after their TTL and not (much) before.
pub async fn ttl_expiry(cache: Arc<dyn Cache>) {
    let key = unique_key("ttl");
    let start = Instant::now();
    cache.set(&key, b"v", SHORT_TTL).await.expect("set");
    let present = cache.get(&key).await.expect("get");
    // Only meaningful if we read before the TTL could have run out.
    if start.elapsed() < SHORT_TTL / 2 {
        assert_eq!(
            present.as_deref(),
            Some(&b"v"[..]),
            "entry missing right after set"
        );
    }
    let gone_after = wait_until_missing(&*cache, &key, start).await;
    assert!(
        gone_after >= SHORT_TTL - Duration::from_millis(20),
        "entry expired after {gone_after:?}, before its TTL {SHORT_TTL:?}"
    );
    assert_eq!(
        cache.take(&key).await.expect("take"),
        None,
        "take of an expired entry"
    );
    assert!(
        !cache.expire(&key, LONG_TTL).await.expect("expire"),
        "expire revived an expired entry"
    );
}

/// `expire` extends or shortens a live entry's TTL and only touches existing keys.
pub async fn expire_touch(cache: Arc<dyn Cache>) {
    // Shorten: a long-lived entry given a short TTL goes away.
    let key = unique_key("expire-shorten");
    cache.set(&key, b"v", LONG_TTL).await.expect("set");
    let start = Instant::now();
    assert!(
        cache.expire(&key, SHORT_TTL).await.expect("expire"),
        "expire of a live key"
    );
    wait_until_missing(&*cache, &key, start).await;

    // Extend: a short-lived entry given a long TTL outlives its first TTL.
    let key = unique_key("expire-extend");
    cache.set(&key, b"v", SHORT_TTL).await.expect("set");
    assert!(
        cache.expire(&key, LONG_TTL).await.expect("expire"),
        "expire of a live key"
    );
    // Waiting past the old TTL is the property itself, not synchronisation.
    tokio::time::sleep(SHORT_TTL * 2).await;
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"v"[..]),
        "expire did not extend the TTL"
    );
}

/// `set` replaces the value and the TTL.
pub async fn overwrite(cache: Arc<dyn Cache>) {
    let key = unique_key("overwrite");
    cache.set(&key, b"one", LONG_TTL).await.expect("set");
    cache.set(&key, b"two", LONG_TTL).await.expect("set");
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"two"[..])
    );

    // The second set's TTL wins, in both directions.
    let key = unique_key("overwrite-ttl");
    cache.set(&key, b"one", LONG_TTL).await.expect("set");
    let start = Instant::now();
    cache.set(&key, b"two", SHORT_TTL).await.expect("set");
    wait_until_missing(&*cache, &key, start).await;

    let key = unique_key("overwrite-ttl-longer");
    cache.set(&key, b"one", SHORT_TTL).await.expect("set");
    cache.set(&key, b"two", LONG_TTL).await.expect("set");
    tokio::time::sleep(SHORT_TTL * 2).await;
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"two"[..]),
        "overwrite kept the old, shorter TTL"
    );
}

/// `set_if_absent` stores only when the key is missing (or expired), and never overwrites.
pub async fn nx_semantics(cache: Arc<dyn Cache>) {
    let key = unique_key("nx");
    assert!(
        cache
            .set_if_absent(&key, b"first", LONG_TTL)
            .await
            .expect("nx"),
        "nx on a missing key"
    );
    assert!(
        !cache
            .set_if_absent(&key, b"second", LONG_TTL)
            .await
            .expect("nx"),
        "nx on a present key"
    );
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"first"[..]),
        "nx overwrote"
    );
    assert!(cache.delete(&key).await.expect("delete"));
    assert!(
        cache
            .set_if_absent(&key, b"third", LONG_TTL)
            .await
            .expect("nx"),
        "nx after delete"
    );

    let key = unique_key("nx-expired");
    let start = Instant::now();
    assert!(
        cache
            .set_if_absent(&key, b"a", SHORT_TTL)
            .await
            .expect("nx")
    );
    wait_until_missing(&*cache, &key, start).await;
    assert!(
        cache.set_if_absent(&key, b"b", LONG_TTL).await.expect("nx"),
        "nx after expiry"
    );
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"b"[..])
    );
}

/// `take` returns the value once and removes it.
pub async fn take_once(cache: Arc<dyn Cache>) {
    let key = unique_key("take");
    cache.set(&key, b"code", LONG_TTL).await.expect("set");
    assert_eq!(
        cache.take(&key).await.expect("take").as_deref(),
        Some(&b"code"[..])
    );
    assert_eq!(cache.take(&key).await.expect("take"), None, "second take");
    assert_eq!(cache.get(&key).await.expect("get"), None, "get after take");
    assert!(
        !cache.delete(&key).await.expect("delete"),
        "delete after take"
    );
}

/// Every operation on a missing key answers "missing", none errs.
pub async fn missing_keys(cache: Arc<dyn Cache>) {
    let key = unique_key("missing");
    assert_eq!(cache.get(&key).await.expect("get"), None);
    assert_eq!(cache.take(&key).await.expect("take"), None);
    assert!(!cache.delete(&key).await.expect("delete"));
    assert!(!cache.expire(&key, LONG_TTL).await.expect("expire"));
    assert_eq!(
        cache.get_typed::<Probe>(&key).await.expect("get_typed"),
        None
    );
    cache.health().await.expect("health");
}

/// Values of a few MiB round-trip intact.
pub async fn large_values(cache: Arc<dyn Cache>) {
    let key = unique_key("large");
    let value: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    cache.set(&key, &value, LONG_TTL).await.expect("set large");
    let read = cache
        .get(&key)
        .await
        .expect("get large")
        .expect("large value present");
    assert!(
        read == value,
        "large value changed ({} bytes read)",
        read.len()
    );
    let taken = cache
        .take(&key)
        .await
        .expect("take large")
        .expect("large value present");
    assert!(taken == value, "large value changed on take");
}

/// Every byte value, the empty value and odd keys round-trip.
pub async fn binary_values(cache: Arc<dyn Cache>) {
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let key = unique_key("binary");
    cache.set(&key, &all, LONG_TTL).await.expect("set");
    assert_eq!(cache.get(&key).await.expect("get"), Some(all.clone()));

    let key = unique_key("empty");
    cache.set(&key, b"", LONG_TTL).await.expect("set empty");
    assert_eq!(
        cache.get(&key).await.expect("get"),
        Some(Vec::new()),
        "empty value is not missing"
    );

    for odd in ["with space", "new\r\nline", "ünïcødé", "*3\r\n$3\r\nDEL"] {
        let key = unique_key(odd);
        cache
            .set(&key, odd.as_bytes(), LONG_TTL)
            .await
            .expect("set odd key");
        assert_eq!(
            cache.get(&key).await.expect("get").as_deref(),
            Some(odd.as_bytes())
        );
    }
}

/// Two caches with different prefixes over one store do not see each other's keys.
pub async fn key_prefix_isolation(a: Arc<dyn Cache>, b: Arc<dyn Cache>) {
    let key = unique_key("prefix");
    a.set(&key, b"a", LONG_TTL).await.expect("set a");
    assert_eq!(b.get(&key).await.expect("get b"), None, "b sees a's key");
    assert!(
        b.set_if_absent(&key, b"b", LONG_TTL).await.expect("nx b"),
        "a's key blocks b's nx"
    );
    assert_eq!(
        a.get(&key).await.expect("get a").as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(
        b.take(&key).await.expect("take b").as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(
        a.get(&key).await.expect("get a").as_deref(),
        Some(&b"a"[..]),
        "b's take hit a"
    );
    assert!(!b.delete(&key).await.expect("delete b"));
    assert_eq!(b.incr(&key, LONG_TTL).await.expect("incr b"), 1);
    assert_eq!(
        a.get(&key).await.expect("get a").as_deref(),
        Some(&b"a"[..]),
        "b's incr hit a"
    );
}

/// A typed entry of version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Some payload.
    pub n: u64,
    /// More payload.
    pub s: String,
}

impl Versioned for Probe {
    const KIND: &'static str = "conformance.probe";
    const VERSION: u16 = 1;
}

/// The same kind after a layout change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeV2 {
    /// Renamed payload.
    pub count: u64,
}

impl Versioned for ProbeV2 {
    const KIND: &'static str = "conformance.probe";
    const VERSION: u16 = 2;
}

/// A bincode-encoded kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactProbe {
    /// Payload.
    pub n: u64,
}

impl Versioned for CompactProbe {
    const KIND: &'static str = "conformance.compact";
    const VERSION: u16 = 1;
    const ENCODING: Encoding = Encoding::Bincode;
}

/// Typed round trips work; another version, kind or raw bytes read as a miss, not an error.
pub async fn version_mismatch(cache: Arc<dyn Cache>) {
    let key = unique_key("typed");
    let probe = Probe {
        n: 42,
        s: "x".into(),
    };
    cache
        .set_typed(&key, &probe, LONG_TTL)
        .await
        .expect("set_typed");
    assert_eq!(
        cache.get_typed::<Probe>(&key).await.expect("get_typed"),
        Some(probe.clone())
    );
    assert_eq!(
        cache.get_typed::<ProbeV2>(&key).await.expect("get v2"),
        None,
        "v2 read v1"
    );
    assert_eq!(
        cache
            .get_typed::<CompactProbe>(&key)
            .await
            .expect("other kind"),
        None
    );
    // The miss does not delete the entry: the old version may still read it.
    assert_eq!(
        cache.get_typed::<Probe>(&key).await.expect("get_typed"),
        Some(probe.clone())
    );

    let key = unique_key("typed-raw");
    cache
        .set(&key, b"\xC7garbage", LONG_TTL)
        .await
        .expect("set raw");
    assert_eq!(cache.get_typed::<Probe>(&key).await.expect("raw"), None);

    let key = unique_key("typed-compact");
    let compact = CompactProbe { n: u64::MAX };
    assert!(
        cache
            .set_if_absent_typed(&key, &compact, LONG_TTL)
            .await
            .expect("nx typed")
    );
    assert!(
        !cache
            .set_if_absent_typed(&key, &compact, LONG_TTL)
            .await
            .expect("nx typed")
    );
    assert_eq!(
        cache.take_typed::<CompactProbe>(&key).await.expect("take"),
        Some(compact)
    );
    assert_eq!(
        cache.take_typed::<CompactProbe>(&key).await.expect("take"),
        None
    );

    // An unreadable single-use entry is consumed by take_typed all the same.
    let key = unique_key("typed-take-old");
    cache
        .set_typed(&key, &probe, LONG_TTL)
        .await
        .expect("set_typed");
    assert_eq!(
        cache.take_typed::<ProbeV2>(&key).await.expect("take v2"),
        None
    );
    assert_eq!(
        cache.get(&key).await.expect("get"),
        None,
        "take_typed left an unreadable entry"
    );
}

/// Runs `f(cache, key)` on `n` tasks released together; returns their results.
async fn race<T, F, Fut>(cache: &Arc<dyn Cache>, key: &str, n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Cache>, String) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let fut = f(Arc::clone(cache), key.to_owned());
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("race task panicked"));
    }
    out
}

/// 64 concurrent `take`s of one key: exactly one gets the value (20 rounds).
pub async fn take_race_64(cache: Arc<dyn Cache>) {
    for round in 0..20 {
        let key = unique_key("take-race");
        cache.set(&key, b"code", LONG_TTL).await.expect("set");
        let results = race(&cache, &key, 64, |c, k| async move { c.take(&k).await }).await;
        let winners = results
            .into_iter()
            .map(|r| r.expect("take in race"))
            .filter(Option::is_some)
            .count();
        assert_eq!(winners, 1, "round {round}: {winners} takes got the value");
    }
}

/// 64 concurrent `set_if_absent`s of one key: exactly one stores.
pub async fn nx_race_64(cache: Arc<dyn Cache>) {
    for round in 0..20 {
        let key = unique_key("nx-race");
        let results = race(&cache, &key, 64, |c, k| async move {
            c.set_if_absent(&k, b"x", LONG_TTL).await
        })
        .await;
        let stored = results
            .into_iter()
            .filter(|r| *r.as_ref().expect("nx in race"))
            .count();
        assert_eq!(
            stored, 1,
            "round {round}: {stored} set_if_absent calls stored"
        );
    }
}

/// Counters count from 1, atomically, and keep the TTL of their creation.
pub async fn incr_counter(cache: Arc<dyn Cache>) {
    let key = unique_key("incr");
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 1);
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 2);
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"2"[..]),
        "counter is decimal text"
    );

    let key = unique_key("incr-race");
    let results = race(&cache, &key, 64, |c, k| async move {
        c.incr(&k, LONG_TTL).await
    })
    .await;
    let mut seen: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("incr in race"))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=64).collect::<Vec<_>>(),
        "concurrent increments lost or repeated"
    );

    // The window starts at creation; a later increment with a long TTL does not extend it.
    let key = unique_key("incr-ttl");
    let start = Instant::now();
    assert_eq!(cache.incr(&key, SHORT_TTL).await.expect("incr"), 1);
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 2);
    wait_until_missing(&*cache, &key, start).await;
    assert_eq!(
        cache.incr(&key, LONG_TTL).await.expect("incr"),
        1,
        "counter restarts after expiry"
    );
}

/// `decr` undoes an `incr`: atomically, never below 0, keeping the counter's
/// expiry, and never creating a missing key (which would have no TTL).
pub async fn decr_counter(cache: Arc<dyn Cache>) {
    let key = unique_key("decr");
    assert_eq!(cache.decr(&key).await.expect("decr missing"), 0);
    assert_eq!(
        cache.get(&key).await.expect("get"),
        None,
        "decr created a missing counter"
    );
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 1);
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 2);
    assert_eq!(cache.decr(&key).await.expect("decr"), 1);
    assert_eq!(cache.decr(&key).await.expect("decr"), 0);
    assert_eq!(
        cache.decr(&key).await.expect("decr at 0"),
        0,
        "went below 0"
    );
    assert_eq!(cache.incr(&key, LONG_TTL).await.expect("incr"), 1);

    // 64 increments and 64 decrements racing end at 0 with no step lost.
    let key = unique_key("decr-race");
    for _ in 0..64 {
        cache.incr(&key, LONG_TTL).await.expect("incr");
    }
    let results = race(&cache, &key, 64, |c, k| async move { c.decr(&k).await }).await;
    let mut seen: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("decr in race"))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..64).collect::<Vec<_>>(),
        "concurrent decrements lost or repeated"
    );

    // The window stays the one set at creation: a decremented counter expires
    // on time, and is not recreated by a later decr.
    let key = unique_key("decr-ttl");
    let start = Instant::now();
    assert_eq!(cache.incr(&key, SHORT_TTL).await.expect("incr"), 1);
    assert_eq!(cache.incr(&key, SHORT_TTL).await.expect("incr"), 2);
    assert_eq!(cache.decr(&key).await.expect("decr"), 1);
    wait_until_missing(&*cache, &key, start).await;
    assert_eq!(cache.decr(&key).await.expect("decr expired"), 0);
    assert_eq!(cache.get(&key).await.expect("get"), None);

    // A value that is not a counter is corrupt, not silently reset.
    let key = unique_key("decr-corrupt");
    cache.set(&key, b"abc", LONG_TTL).await.expect("set");
    assert!(
        matches!(cache.decr(&key).await, Err(crate::CacheError::Corrupt(_))),
        "decr of a non-counter"
    );
}

/// The backend reports how many entries it evicted (standalone backends:
/// always a number), and the number never goes down.
pub async fn evictions_reported(cache: Arc<dyn Cache>) {
    let first = cache
        .evictions()
        .await
        .expect("evictions")
        .expect("a standalone backend reports evictions");
    cache
        .set(&unique_key("evict"), b"v", LONG_TTL)
        .await
        .expect("set");
    let second = cache.evictions().await.expect("evictions").unwrap_or(0);
    assert!(
        second >= first,
        "eviction count went from {first} to {second}"
    );
}

/// A delayed queue hands out due items in due order, each to one claimer
/// per lease, brings an unacknowledged item back after its lease, refuses
/// new items beyond `max` (but re-times queued ones), and forgets what was
/// dequeued.
pub async fn delayed_queue(cache: Arc<dyn Cache>) {
    let q = unique_key("queue");
    let now = 1_000_000;
    assert!(
        cache
            .enqueue(&q, b"late", now + 500, 3)
            .await
            .expect("enqueue")
    );
    assert!(
        cache
            .enqueue(&q, b"first", now - 20, 3)
            .await
            .expect("enqueue")
    );
    assert!(
        cache
            .enqueue(&q, b"second", now - 10, 3)
            .await
            .expect("enqueue")
    );
    assert!(
        !cache.enqueue(&q, b"fourth", now, 3).await.expect("enqueue"),
        "a full queue refuses a new item"
    );
    assert!(
        cache
            .enqueue(&q, b"late", now + 400, 3)
            .await
            .expect("enqueue"),
        "a queued item may be re-timed when the queue is full"
    );
    let claimed = cache.claim_due(&q, now, 1_000, 10).await.expect("claim");
    assert_eq!(
        claimed,
        vec![b"first".to_vec(), b"second".to_vec()],
        "the due items, in due order"
    );
    assert!(
        cache
            .claim_due(&q, now, 1_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "claimed items are leased"
    );
    assert_eq!(
        cache
            .claim_due(&q, now + 450, 1_000, 1)
            .await
            .expect("claim"),
        vec![b"late".to_vec()],
        "the limit holds, and a re-timed item is due at its new time"
    );
    assert!(cache.dequeue(&q, b"first").await.expect("dequeue"));
    assert!(!cache.dequeue(&q, b"first").await.expect("dequeue"));
    assert_eq!(
        cache
            .claim_due(&q, now + 1_000, 1_000, 10)
            .await
            .expect("claim"),
        vec![b"second".to_vec()],
        "an unacknowledged item comes back after its lease"
    );
    assert!(
        cache.enqueue(&q, b"fourth", now, 3).await.expect("enqueue"),
        "a dequeued item frees its place"
    );
    assert!(
        cache
            .claim_due(&unique_key("empty"), now, 1, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

/// Of 16 concurrent claimers of 8 due items, each item goes to one.
pub async fn delayed_queue_claim_race(cache: Arc<dyn Cache>) {
    let q = unique_key("queue-race");
    for i in 0..8u8 {
        assert!(cache.enqueue(&q, &[i], 10, 100).await.expect("enqueue"));
    }
    let claims: Vec<Vec<Vec<u8>>> = race(&cache, &q, 16, |c, q| async move {
        c.claim_due(&q, 100, 60_000, 2).await.expect("claim")
    })
    .await;
    let mut all: Vec<Vec<u8>> = claims.into_iter().flatten().collect();
    all.sort();
    let expected: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i]).collect();
    assert_eq!(all, expected, "every item claimed exactly once");
}
