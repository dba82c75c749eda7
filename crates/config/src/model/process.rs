//! How the process logs and how it stops.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::default_true;

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter directive (`info`, `debug,hyper=info`); `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Output format; unset means JSON unless stdout is a terminal.
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// One `info` line per request of the main listener (target `access`): method, path
    /// without the query (it may carry codes or tokens), status, duration, client, app, user.
    #[serde(default = "default_true")]
    pub access_log: bool,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: None,
            access_log: true,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Graceful shutdown timings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, `/readyz` answers 503 for this long before listeners close.
    #[serde(default = "default_shutdown_delay", with = "humantime_serde")]
    pub delay: Duration,
    /// In-flight requests get at most this long to finish.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn default_shutdown_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            delay: default_shutdown_delay(),
            drain_timeout: default_drain_timeout(),
        }
    }
}
