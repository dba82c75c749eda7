//! orchestrator-config: the typed configuration of the orchestrator and
//! everything that produces it — reading the YAML file and environment
//! overrides, resolving `${secret:…}` / `${env:…}` references, strict
//! deserialisation, validation that reports every problem with its key path,
//! and a watcher that yields new validated configs when the mounted files change.
//!
//! It holds no runtime state and knows nothing about HTTP, caches or keys
//! beyond their settings.

#![forbid(unsafe_code)]

pub mod model;
pub mod secret;

pub use model::*;
pub use secret::Secret;
