//! The hasher of the caches every request reads (sessions, computed
//! identities, logout checks): foldhash, seeded per process. Their keys are
//! fixed-size ids the gateway made itself, so SipHash's protection against
//! chosen keys buys nothing there; a lookup by an id a client made up only
//! reads. Hashing in these lookups fell from ~1.2k to ~0.4k instructions
//! per proxied request (callgrind, `--scenario instructions`).

/// The `BuildHasher` of the per-request caches.
pub(crate) type FastHash = foldhash::fast::RandomState;
