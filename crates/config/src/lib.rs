//! orchestrator-config: the typed configuration of the orchestrator and
//! everything that produces it — reading the YAML file and environment
//! overrides, resolving `${secret:…}` / `${env:…}` references, strict
//! deserialisation, validation that reports every problem with its key path,
//! and a watcher that yields new validated configs when the mounted files change.
//!
//! It holds no runtime state and knows nothing about HTTP, caches or keys
//! beyond their settings.

#![forbid(unsafe_code)]

mod error;
mod load;
pub mod model;
mod resolve;
pub mod secret;
mod sources;
mod validate;
mod watch;

pub use error::{ConfigError, ConfigErrors};
pub use load::{DEFAULT_CONFIG_PATH, ENV_PREFIX, load, load_str};
pub use model::*;
pub use secret::Secret;
pub use sources::{MapSources, Sources, SystemSources};
pub use watch::{ConfigWatcher, WatchEvent};
