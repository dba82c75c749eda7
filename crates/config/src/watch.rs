//! Watches the config file and the secrets directory and yields each new
//! validated config.
//!
//! Kubernetes updates a mounted ConfigMap or Secret by writing a new
//! timestamped directory and renaming a `..data_tmp` symlink over `..data`;
//! the visible files are symlinks through `..data`. Watching a file would miss
//! that swap, so the watcher watches the *directories* (non-recursively) and
//! reloads whenever anything in them changes, after a short quiet period so a
//! burst of events (an editor's save, the swap's several renames) is one reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::ConfigErrors;
use crate::load::load;
use crate::model::Config;
use crate::sources::Sources;

/// How long the watched directories must be quiet before a reload.
const QUIET_PERIOD: Duration = Duration::from_millis(150);

/// What a change of the watched files produced.
#[derive(Debug)]
pub enum WatchEvent {
    /// A valid config that differs from the previous one.
    Reloaded(Box<Config>),
    /// The files changed but the new config is invalid: keep serving the old one.
    Rejected(ConfigErrors),
    /// Files changed but the config is the same as the last valid one (e.g. a
    /// TLS certificate was renewed, a template edited). It carries that config:
    /// when applying it failed (a broken template), the runtime still serves
    /// an older one and should try again.
    Touched(Box<Config>),
}

/// Keeps the OS watches alive; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: Arc<Mutex<RecommendedWatcher>>,
}

/// The watch on `ui.templatesDir`, which a reload may move: the folder the
/// last valid config names is the one watched.
struct TemplatesWatch {
    watcher: Arc<Mutex<RecommendedWatcher>>,
    /// Directories watched for the config and secrets; never unwatched here.
    fixed: Vec<PathBuf>,
    current: Option<PathBuf>,
}

impl TemplatesWatch {
    fn follow(&mut self, dir: Option<&PathBuf>) {
        if self.current.as_ref() == dir {
            return;
        }
        let mut watcher = self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = self.current.take() {
            if !self.fixed.contains(&old) {
                let _ = watcher.unwatch(&old);
            }
        }
        if let Some(dir) = dir.filter(|d| d.is_dir() && !self.fixed.contains(d)) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.current = Some(dir.clone()),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch ui.templatesDir")
                }
            }
        }
    }
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWatcher")
    }
}

impl ConfigWatcher {
    /// Starts watching `config_path`'s directory, `current.secretsDir`,
    /// `current.ui.templatesDir` and the
    /// directories of `extra_files` (e.g. TLS certificates). Must run inside a
    /// tokio runtime. `current` is the config now serving, to tell changes apart.
    pub fn start(
        config_path: PathBuf,
        extra_files: &[PathBuf],
        current: Config,
        sources: Arc<dyn Sources>,
    ) -> Result<(Self, mpsc::Receiver<WatchEvent>), notify::Error> {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res {
                    if !event.kind.is_access() {
                        // The receiver is gone only at shutdown.
                        let _ = raw_tx.send(());
                    }
                }
            })?;

        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut add = |p: &Path| {
            if let Some(dir) = p.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_path_buf()
                };
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        };
        add(&config_path);
        // A config that is a symlink (kubectl-style or hand-made) may live elsewhere.
        if let Ok(real) = std::fs::canonicalize(&config_path) {
            add(&real);
        }
        for f in extra_files {
            add(f);
        }
        if !dirs.contains(&current.secrets_dir) && current.secrets_dir.is_dir() {
            dirs.push(current.secrets_dir.clone());
        }
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        let watcher = Arc::new(Mutex::new(watcher));
        let mut templates = TemplatesWatch {
            watcher: watcher.clone(),
            fixed: dirs,
            current: None,
        };
        templates.follow(current.ui.templates_dir.as_ref());

        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(debounce_and_reload(
            raw_rx,
            tx,
            config_path,
            current,
            sources,
            templates,
        ));
        Ok((Self { _watcher: watcher }, rx))
    }
}

async fn debounce_and_reload(
    mut raw: mpsc::UnboundedReceiver<()>,
    tx: mpsc::Sender<WatchEvent>,
    config_path: PathBuf,
    mut last_good: Config,
    sources: Arc<dyn Sources>,
    mut templates: TemplatesWatch,
) {
    let mut last_errors: Option<ConfigErrors> = None;
    while raw.recv().await.is_some() {
        // Wait until the directories are quiet, so a burst is one reload.
        while let Ok(Some(())) = tokio::time::timeout(QUIET_PERIOD, raw.recv()).await {}
        let path = config_path.clone();
        let src = sources.clone();
        let Ok(result) = tokio::task::spawn_blocking(move || load(&path, src.as_ref())).await
        else {
            continue;
        };
        let event = match result {
            Ok(cfg) if cfg == last_good => {
                last_errors = None;
                WatchEvent::Touched(Box::new(cfg))
            }
            Ok(cfg) => {
                last_errors = None;
                templates.follow(cfg.ui.templates_dir.as_ref());
                last_good = cfg.clone();
                WatchEvent::Reloaded(Box::new(cfg))
            }
            Err(errors) => {
                if last_errors.as_ref() == Some(&errors) {
                    continue;
                }
                last_errors = Some(errors.clone());
                WatchEvent::Rejected(errors)
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}
