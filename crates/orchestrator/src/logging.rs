//! Logs through tracing: JSON when stdout is not a terminal (or `log.format: json`),
//! text otherwise; the level from `RUST_LOG` or `log.level`. `log.level` is
//! reloadable (the filter sits behind a reload handle); the format is not.

use std::io::IsTerminal;

use orchestrator_config::{LogConfig, LogFormat};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, fmt, reload};

/// Changes the level filter of the running process.
pub(crate) struct LevelHandle {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.level`, now and on reload.
    from_env: bool,
}

impl LevelHandle {
    /// Applies a new `log.level` unless `RUST_LOG` pins the filter.
    pub(crate) fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Ok(());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("log.level: {e}"))
    }
}

/// Installs the global subscriber; call once, after the config is loaded.
pub(crate) fn init(cfg: &LogConfig) -> Result<LevelHandle, String> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => (
            EnvFilter::try_new(v).map_err(|e| format!("RUST_LOG: {e}"))?,
            true,
        ),
        _ => (
            EnvFilter::try_new(&cfg.level).map_err(|e| format!("log.level: {e}"))?,
            false,
        ),
    };
    let json = match cfg.format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let output = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stdout)
            .boxed()
    } else {
        fmt::layer().with_writer(std::io::stdout).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LevelHandle { handle, from_env })
}
