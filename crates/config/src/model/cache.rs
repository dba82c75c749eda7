//! The store behind the provider and shared gateway sessions.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Which cache backend holds shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In the process: fine for one replica.
    #[default]
    Memory,
    /// Redis (standalone or cluster): required for several replicas.
    Redis,
}

impl CacheBackend {
    /// The name used in config and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// The cache section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` or `redis`.
    #[serde(default)]
    pub backend: CacheBackend,
    /// Bounds of the in-memory backend.
    #[serde(default)]
    pub memory: MemoryCacheConfig,
    /// Redis connection settings (used when `backend: redis`).
    #[serde(default)]
    pub redis: RedisConfig,
}

/// Bounds of the in-memory cache backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryCacheConfig {
    /// Most entries held; the least useful are evicted beyond it.
    #[serde(default = "default_memory_max_entries")]
    pub max_entries: u64,
    /// Most bytes of keys + values held (approximate).
    #[serde(default = "default_memory_max_bytes")]
    pub max_bytes: u64,
}

fn default_memory_max_entries() -> u64 {
    1_000_000
}
fn default_memory_max_bytes() -> u64 {
    256 * 1024 * 1024
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: default_memory_max_entries(),
            max_bytes: default_memory_max_bytes(),
        }
    }
}

/// Redis connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` for TLS (standalone).
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Redis Cluster node URLs; when non-empty, cluster mode is used and `url` is ignored.
    #[serde(default)]
    pub cluster_urls: Vec<String>,
    /// ACL user name, if any.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (usually `${secret:redis-password}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Prefix of every key, so several installations can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Deadline of every single Redis call.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Deadline to establish a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PEM CA bundle to trust for `rediss://` instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/0".to_owned()
}
fn default_key_prefix() -> String {
    "orchestrator:".to_owned()
}
fn default_operation_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            cluster_urls: Vec::new(),
            username: None,
            password: None,
            key_prefix: default_key_prefix(),
            operation_timeout: default_operation_timeout(),
            connect_timeout: default_connect_timeout(),
            ca_file: None,
        }
    }
}
