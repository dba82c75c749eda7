//! Where configuration comes from: files and environment variables, behind a
//! small trait so tests feed maps instead of touching the real process.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// Reads files and environment variables for the loader.
pub trait Sources: Send + Sync {
    /// The whole content of a file.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// One environment variable.
    fn env_var(&self, name: &str) -> Option<String>;
    /// Every environment variable (for `ORCHESTRATOR__…` overrides).
    fn env_vars(&self) -> Vec<(String, String)>;
}

/// The real file system and process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemSources;

impl Sources for SystemSources {
    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn env_vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

/// In-memory files and environment, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapSources {
    /// Path → content.
    pub files: HashMap<PathBuf, String>,
    /// Name → value.
    pub env: HashMap<String, String>,
}

impl MapSources {
    /// Adds a file.
    pub fn file(mut self, path: impl Into<PathBuf>, content: impl Into<String>) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }
}

impl Sources for MapSources {
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn env_vars(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
