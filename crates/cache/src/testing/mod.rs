//! Test support shared by this crate's tests, the end-to-end tests and the benches.
//!
//! - [`TestRedis`]: a real `redis-server` on a free loopback port, stopped on drop.
//! - [`conformance`]: one public async function per property that every
//!   [`crate::Cache`] backend must have; each panics with a message when the
//!   property does not hold.

#![allow(clippy::unwrap_used)]

pub mod conformance;
mod redis_server;

pub use redis_server::{TestRedis, TestRedisCluster};
