//! Hot reload: turns watcher events into runtime swaps and metrics.

use std::path::Path;
use std::sync::Arc;

use orchestrator_config::{Config, ConfigWatcher, SystemSources, WatchEvent};

use crate::app::{App, PagesReload};

/// Starts watching; the returned watcher must be kept alive.
pub(crate) fn start(config_path: &Path, config: &Config, app: Arc<App>) -> Option<ConfigWatcher> {
    let extra: Vec<_> = config
        .listen
        .tls
        .iter()
        .flat_map(|t| [t.cert_file.clone(), t.key_file.clone()])
        .collect();
    let (watcher, mut events) = match ConfigWatcher::start(
        config_path.to_path_buf(),
        &extra,
        config.clone(),
        Arc::new(SystemSources),
    ) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config files; hot reload is off");
            return None;
        }
    };
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let event = match event {
                // The last valid config never got applied (a broken template
                // rejected it): the touch that fixed it applies it now.
                WatchEvent::Touched(cfg) if *cfg != app.runtime().config => {
                    WatchEvent::Reloaded(cfg)
                }
                other => other,
            };
            match event {
                WatchEvent::Reloaded(cfg) => match app.apply(*cfg) {
                    Ok(()) => {
                        app.metrics.reload(true);
                        tracing::info!("config reloaded");
                    }
                    Err(problems) => {
                        app.metrics.reload(false);
                        for p in problems {
                            tracing::error!(problem = %p, "config reload rejected; the old config keeps serving");
                        }
                    }
                },
                WatchEvent::Rejected(errors) => {
                    app.metrics.reload(false);
                    for e in errors.iter() {
                        tracing::error!(problem = %e, "config reload rejected; the old config keeps serving");
                    }
                }
                WatchEvent::Touched(cfg) => {
                    if let Err(problems) = app.reload_certificate(&cfg) {
                        for p in problems {
                            tracing::error!(problem = %p, "certificate reload failed; the old certificate keeps serving");
                        }
                    }
                    match app.reload_pages(&cfg) {
                        PagesReload::Unchanged => {}
                        PagesReload::Changed => {
                            app.metrics.reload(true);
                            tracing::info!("templates reloaded");
                        }
                        PagesReload::Rejected(problems) => {
                            app.metrics.reload(false);
                            for p in problems {
                                tracing::error!(problem = %p, "templates reload rejected; the old pages keep serving");
                            }
                        }
                        PagesReload::StillRejected => {}
                    }
                }
            }
        }
    });
    Some(watcher)
}
