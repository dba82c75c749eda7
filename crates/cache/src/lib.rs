//! The cache behind the OIDC provider's state and the gateway's shared sessions.
//!
//! Holds the object-safe [`Cache`] trait (byte values, per-entry TTL, atomic
//! `take`/`set_if_absent`/`incr`/`decr`, an eviction count), its two
//! backends — [`MemoryCache`] on quick_cache for one replica and [`RedisCache`] on
//! the `redis` crate (standalone or cluster, TLS, bounded by a per-operation
//! timeout) for many — the one record layer ([`CacheExt`], [`Versioned`]:
//! records behind a header naming their kind and layout version, which the
//! provider's store and the gateway's shared sessions both use), the
//! [`Prefixed`] namespace decorator,
//! the metrics decorator [`Instrumented`], and [`build`], which picks the
//! backend from config.
//!
//! It does not know what is stored (codes, sessions, counters belong to their
//! crates), nor about HTTP: readiness only calls [`Cache::health`].
//!
//! With the `testing` feature, [`testing`] provides `TestRedis` (a real
//! `redis-server` on a free loopback port) and the conformance suite that
//! every backend must pass.

#![forbid(unsafe_code)]

mod backend;
mod cache;
mod error;
mod memory;
mod metrics;
mod prefixed;
mod redis_cache;
mod typed;

#[cfg(feature = "testing")]
pub mod testing;

pub use backend::build;
pub use cache::Cache;
pub use error::CacheError;
pub use memory::MemoryCache;
pub use metrics::{CacheMetrics, Instrumented};
pub use prefixed::Prefixed;
pub use redis_cache::RedisCache;
pub use typed::{CacheExt, DecodeMiss, Encoding, Versioned, decode, encode};
